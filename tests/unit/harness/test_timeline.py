"""The HTML report's timelines, on hand-made histories: marks, events, time without a connection."""

from __future__ import annotations

from harness.checkers import Verdict
from harness.history import (
    AdvanceClock,
    Body,
    Closed,
    Connect,
    Delivered,
    Disconnect,
    Done,
    FaultAction,
    Outcome,
    Phase,
    Resume,
    StepEnd,
    StepStart,
)
from harness.report import timeline
from harness.results import ScenarioResult, StepResult
from tests.unit.harness.test_reports import FAILING, PASSING, ops

Line = tuple[int, str, Phase, float, Body]


def scenario(
    *lines: Line, positions: str = "dense", steps: list[StepResult] | None = None
) -> ScenarioResult:
    """A passed scenario with this history (and these steps)."""
    return ScenarioResult(
        name="s",
        file="s.yaml",
        status="passed",
        positions=positions,
        history=ops(*lines),
        steps=steps or [],
    )


def kinds(tl: timeline.ClientTimeline) -> list[tuple[str, object]]:
    return [(m.kind, m.position) for m in tl.marks]


def delivered(op_id: int, t: float, position: int | str, stream: str = "S#1") -> Line:
    return (op_id, "client", "event", t, Delivered(stream=stream, position=position, kind="reply"))


def test_a_position_delivered_twice_is_a_duplicate_named_by_the_failed_check() -> None:
    """The golden failing run delivers 5 twice; its step 4's delivery check named it. (Its
    hand-made history also never delivered 1 to 4, which no check named.)"""
    tl = timeline.timeline(FAILING, "client")
    assert [("delivered", 5), ("duplicate", 5)] == kinds(tl)[:2]
    assert [None, "4"] == [m.found_by for m in tl.marks][:2]
    assert [("lost", p, None) for p in (1, 2, 3, 4)] == [
        (m.kind, m.position, m.found_by) for m in tl.marks[2:]
    ]


def test_a_hole_in_dense_positions_is_a_loss_drawn_when_a_later_position_arrived() -> None:
    """1, 2, 4: position 3 was lost, drawn at the time 4 arrived; nothing was named by a check."""
    s = scenario(
        (1, "client", "invoke", 0.0, Connect()),
        (1, "client", "ok", 0.1, Outcome(kind="new", session="S", stream="S#1", after=0)),
        delivered(2, 0.2, 1),
        delivered(3, 0.3, 2),
        delivered(4, 0.5, 4),
    )
    tl = timeline.timeline(s, "client")
    assert [("delivered", 1), ("delivered", 2), ("delivered", 4), ("lost", 3)] == kinds(tl)
    assert 0.5 == tl.marks[-1].t


def test_a_position_after_a_later_one_is_reordered() -> None:
    """1, 3, 2: position 2 arrived after 3."""
    s = scenario(
        (1, "client", "ok", 0.1, Outcome(kind="new", session="S", stream="S#1", after=0)),
        delivered(2, 0.2, 1),
        delivered(3, 0.3, 3),
        delivered(4, 0.4, 2),
    )
    assert [("delivered", 1), ("delivered", 3), ("reordered", 2)] == kinds(
        timeline.timeline(s, "client")
    )


def test_positions_the_target_declared_lost_are_not_losses() -> None:
    """A resume that declares 3 to 4 missed: those are marked declared lost, not lost."""
    s = scenario(
        (1, "client", "invoke", 0.0, Connect()),
        (1, "client", "ok", 0.1, Outcome(kind="new", session="S", stream="S#1", after=0)),
        delivered(2, 0.2, 1),
        delivered(3, 0.3, 2),
        (4, "client", "invoke", 0.4, Resume()),
        (4, "client", "ok", 0.5, Outcome(kind="degraded", stream="S#1", missed=(3, 4))),
        delivered(5, 0.6, 5),
    )
    marks = kinds(timeline.timeline(s, "client"))
    assert [("declared_lost", 3), ("declared_lost", 4)] == [m for m in marks if m[0] != "delivered"]


def test_opaque_positions_are_drawn_by_arrival_and_only_duplicates_are_judged() -> None:
    """Opaque positions: y is the arrival order; a repeated one is a duplicate, no loss or order."""
    s = scenario(
        (1, "client", "ok", 0.1, Outcome(kind="new", session="S", stream="S#1")),
        delivered(2, 0.2, "b"),
        delivered(3, 0.3, "a"),
        delivered(4, 0.4, "b"),
        positions="opaque",
    )
    tl = timeline.timeline(s, "client")
    assert ("arrival", [1.0, 2.0, 3.0]) == (tl.axis, [m.y for m in tl.marks])
    assert ["delivered", "delivered", "duplicate"] == [m.kind for m in tl.marks]


def test_the_scenario_clock_adds_every_virtual_jump_before_an_operation() -> None:
    """After a 15 s clock jump, an op at wall 0.4 s is at 15.4 s on the scenario's clock."""
    s = scenario(
        (1, "clock", "invoke", 0.3, AdvanceClock(seconds=15.0)),
        (1, "clock", "ok", 0.31, Done()),
        (2, "client", "invoke", 0.4, Resume()),
    )
    assert [0.3, 15.31, 15.4] == [round(t, 6) for t in timeline.scenario_clock(s.history).values()]


def test_events_and_the_time_without_a_connection() -> None:
    """The golden passing run: a fault, a drop, a clock jump and a full resume; the proxy's own
    creation and deletion are not events; the client was offline from the drop to the resume."""
    tl = timeline.timeline(PASSING, "client")
    texts = [(e.lane, e.kind, e.text) for e in tl.events]
    assert [
        ("session", "new", "connect: new session"),
        ("network", "fault", "toxic latency"),
        ("session", "drop", "drop: reset"),
        ("clock", "clock", "virtual clock +15 s"),
        ("session", "full", "resume: full, after a 15.040 s gap"),
        ("network", "fault", "heal: every toxic removed"),
    ] == texts
    assert [(0.3, 15.35, "drop (reset)")] == [
        (round(o.start, 6), round(o.end or 0, 6), o.why) for o in tl.offline
    ]


def test_a_rejected_resume_keeps_the_client_offline_until_a_new_session() -> None:
    """Closed, resume rejected, connect new: one offline period, from the close to the connect."""
    s = scenario(
        (1, "client", "ok", 0.1, Outcome(kind="new", session="S", stream="S#1")),
        (2, "client", "event", 0.2, Closed(code=1006)),
        (3, "client", "invoke", 0.3, Resume()),
        (3, "client", "ok", 0.31, Outcome(kind="rejected", reason="session_expired")),
        (4, "client", "invoke", 0.4, Connect()),
        (4, "client", "ok", 0.41, Outcome(kind="new", session="T", stream="T#1")),
        (5, "client", "invoke", 0.5, Disconnect(how="close")),
    )
    tl = timeline.timeline(s, "client")
    assert [(0.2, 0.41), (0.5, None)] == [(o.start, o.end) for o in tl.offline]
    assert "resume: rejected (session_expired)" in [e.text for e in tl.events]


def test_a_failed_check_is_an_event_at_the_end_of_its_step() -> None:
    """A failed expect step puts its failed verdict on the checks lane, when the step ended."""
    step = StepResult(
        path="2",
        kind="expect",
        status="failed",
        client="client",
        verdicts=[Verdict(check="delivery", passed=False, message="position 3 never arrived")],
    )
    s = scenario(
        (1, "runner", "invoke", 0.1, StepStart(path="1", kind="connect")),
        (2, "client", "invoke", 0.12, Connect()),
        (2, "client", "ok", 0.15, Outcome(kind="new", session="S", stream="S#1")),
        (1, "runner", "ok", 0.2, StepEnd(status="passed")),
        (3, "runner", "invoke", 0.3, StepStart(path="2", kind="expect")),
        (4, "fault", "invoke", 0.35, FaultAction(action="down")),
        (3, "runner", "ok", 0.4, StepEnd(status="failed")),
        steps=[step],
    )
    tl = timeline.timeline(s, "client")
    assert ("checks", 0.4, "step 2 delivery: position 3 never arrived", "2") == next(
        (e.lane, e.t, e.text, e.step) for e in tl.events if e.kind == "check_failed"
    )
    assert ["1", "2"] == [e.step for e in tl.events if e.kind in ("new", "fault")]


def test_clients_are_listed_in_the_order_they_first_appear() -> None:
    """Runner, fault, clock and target are not clients."""
    s = scenario(
        (1, "fault", "invoke", 0.0, FaultAction(action="create")),
        (2, "b", "invoke", 0.1, Connect()),
        (3, "a", "invoke", 0.2, Connect()),
        (4, "b", "invoke", 0.3, Connect()),
    )
    assert ["b", "a"] == timeline.clients(s)


def test_the_shared_fault_layer_inside_a_parallel_step_is_shown_once_with_a_count() -> None:
    """Three clients of a parallel step each take the proxy down: each timeline shows it once,
    then how many more times it happened, at the last one."""
    lines: list[Line] = [(1, "runner", "invoke", 0.0, StepStart(path="1", kind="parallel"))]
    for n, name in enumerate(("p1", "p2", "p3")):
        lines += [
            (
                10 + n,
                "runner",
                "invoke",
                0.1 + n,
                StepStart(path=f"1.{name}.1", kind="drop", client=name),
            ),
            (20 + n, "fault", "invoke", 0.2 + n, FaultAction(action="down")),
            (20 + n, "fault", "ok", 0.25 + n, Done()),
            (10 + n, "runner", "ok", 0.3 + n, StepEnd(status="passed")),
        ]
    lines.append((1, "runner", "ok", 4.0, StepEnd(status="passed")))
    lines.append((30, "fault", "invoke", 5.0, FaultAction(action="down")))
    tl = timeline.timeline(scenario(*lines), "p2")
    assert [
        (0.2, "proxy down (connections cut, new ones refused)", "1.p1.1"),
        (
            2.2,
            "proxy down (connections cut, new ones refused): 2 more times in the parallel "
            "step, by any client, the last here",
            None,
        ),
        (5.0, "proxy down (connections cut, new ones refused)", None),
    ] == [(round(e.t, 6), e.text, e.step) for e in tl.events]
