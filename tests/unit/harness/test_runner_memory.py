"""The runner and the judge, on the memory driver: every step kind, every verdict both ways.

No sockets and no Toxiproxy: the target is a ``MemoryWorld`` (the reference server's state
machines, agent and store in memory), its fault layer plays Toxiproxy's actions on in-memory
links, and a test that needs a broken server tampers with the frames on their way to the
client (losing, doubling, reordering or rewriting one) to see the checker catch it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from harness.driver.memory import factory
from harness.faults.memory import FaultUnsupportedError, MemoryFaults
from harness.history import (
    AdvanceClock,
    ContextValue,
    Disconnect,
    FaultAction,
    FetchHistory,
    History,
    HistoryPage,
    MetricsValue,
    Op,
    RealWait,
    Restart,
    SnapshotTaken,
    bodies,
    completion,
)
from harness.plan import ClockMode, plan
from harness.results import StepResult
from harness.runner import FaultLayerDownError, ScenarioRun, Waits
from harness.scenario import load, load_text
from harness.scenario import model as m
from harness.targets.memory import MemoryTarget, MemoryWorld, Tamper, doubling, losing
from reference_server.protocol import codec
from reference_server.protocol.messages import ConversationHistory, ReplyChunk, Resumed

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(5)]

FAST = Waits(
    connect=0.3,
    fetch=0.5,
    settle=0.1,
    closing=0.0,
    backoff_base=0.001,
    backoff_cap=0.005,
    fault_probe=0.05,
)


def scenario(steps: str, *, clients: str = "", clock: str = "virtual") -> m.Scenario:
    """A scenario from the YAML of its steps (and of its clients), loaded and checked."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ")
    return load_text(f"name: unit\nclock: {clock}\n{clients}steps:\n{body}\n")


@dataclass
class Ran:
    """One finished run: the steps' results, the history, the world it ran in."""

    steps: list[StepResult]
    history: History
    world: MemoryWorld
    faults: MemoryFaults
    runner: ScenarioRun

    @property
    def statuses(self) -> dict[str, str]:
        return {s.path: s.status for s in self.steps}

    def step(self, path: str) -> StepResult:
        return next(s for s in self.steps if s.path == path)

    def verdicts(self, path: str) -> list[tuple[str, bool]]:
        return [(v.check, v.passed) for v in self.step(path).verdicts]

    def ops(self, kind: type) -> list[Op]:
        """The recorded operations (or observations) whose body is a ``kind``."""
        return [op for op in self.history.ops if isinstance(op.body, kind)]


async def run(
    steps: m.Scenario | str,
    *,
    world: MemoryWorld | None = None,
    clock: ClockMode = "virtual",
    clients: str = "",
    prepare: Callable[[MemoryWorld, MemoryFaults], None] | None = None,
) -> Ran:
    """Run a scenario on a fresh memory world (or ``world``), with the runner's short waits."""
    sc = steps if isinstance(steps, m.Scenario) else scenario(steps, clients=clients, clock=clock)
    world = world or MemoryWorld()
    target = MemoryTarget(world)
    history = History()
    faults = MemoryFaults(world, history)
    if prepare is not None:
        prepare(world, faults)
    runner = ScenarioRun(
        sc,
        target=target,
        faults=faults,
        history=history,
        driver=factory,
        clock=clock,
        seed=7,
        waits=FAST,
    )
    try:
        results = await runner.run()
    finally:
        await target.stop()
    return Ran(results, history, world, faults, runner)


def passed(*paths: str) -> dict[str, str]:
    return dict.fromkeys(paths, "passed")


# --- tampering: a broken server, as the client sees it --------------------------------------------


def reordering(nth: int = 2) -> Tamper:
    """Hold the ``nth`` reply chunk back and deliver it after the next frame."""
    held: list[bytes] = []
    seen = 0

    def tamper(frame: bytes) -> Sequence[bytes]:
        nonlocal seen
        if isinstance(codec.decode_server(frame), ReplyChunk):
            seen += 1
            if seen == nth:
                held.append(frame)
                return []
        out, held[:] = [frame, *held], []
        return out

    return tamper


def garbling() -> Tamper:
    """Follow the first frame with one that is not a message of the protocol."""
    done = False

    def tamper(frame: bytes) -> Sequence[bytes]:
        nonlocal done
        if done:
            return [frame]
        done = True
        return [frame, b'{"type": "no_such_message"}']

    return tamper


def rewriting_history(change: Callable[[ConversationHistory], ConversationHistory]) -> Tamper:
    """Change every history page the server sends."""

    def tamper(frame: bytes) -> Sequence[bytes]:
        message = codec.decode_server(frame)
        if isinstance(message, ConversationHistory):
            return [codec.encode(change(message))]
        return [frame]

    return tamper


def claiming_full_resumes() -> Tamper:
    """Every resumed says ``full`` with no warning, whatever the gap."""

    def tamper(frame: bytes) -> Sequence[bytes]:
        message = codec.decode_server(frame)
        if isinstance(message, Resumed):
            return [codec.encode(msgspec.structs.replace(message, outcome="full", warnings=()))]
        return [frame]

    return tamper


def tampered(tamper: Tamper) -> Callable[[MemoryWorld, MemoryFaults], None]:
    def prepare(world: MemoryWorld, faults: MemoryFaults) -> None:
        world.tamper = tamper

    return prepare


# --- connect --------------------------------------------------------------------------------------


async def test_connect_opens_a_new_session() -> None:
    """A connect step passes with a new session, judged from the recorded outcome."""
    ran = await run("- connect:")
    assert passed("1") == ran.statuses
    assert [("connect", True)] == ran.verdicts("1")


async def test_connect_fails_while_the_proxy_is_down() -> None:
    """A connect refused until the step's bound fails the step with the driver's reason."""
    ran = await run("- drop: proxy_down\n- connect:")
    assert {"1": "passed", "2": "failed"} == ran.statuses
    assert "connection refused" in ran.step("2").message


async def test_a_failure_while_the_fault_layer_is_silent_is_an_infrastructure_error() -> None:
    """A driver failure while the fault layer does not answer is blamed on the harness."""

    def silent(world: MemoryWorld, faults: MemoryFaults) -> None:
        world.proxy_down()
        faults.answering = False

    with pytest.raises(FaultLayerDownError):
        await run("- connect:", prepare=silent)


# --- chat -----------------------------------------------------------------------------------------


async def test_chat_waits_for_every_reply() -> None:
    """A chat step passes when each message got its complete reply."""
    ran = await run("- connect:\n- chat: 3")
    assert passed("1", "2") == ran.statuses
    assert [("chat", True)] == ran.verdicts("2")


async def test_chat_expecting_a_timeout_holds_on_a_blackholed_link() -> None:
    """``expect: timeout`` passes when the replies fall into a blackhole."""
    ran = await run(
        """
        - connect:
        - fault: {toxic: timeout, timeout: 0s}
        - chat: {timeout: 0.1s, expect: timeout}
        """
    )
    assert passed("1", "2", "3") == ran.statuses


async def test_chat_expecting_a_timeout_fails_when_the_reply_comes() -> None:
    """``expect: timeout`` fails when every reply was complete."""
    ran = await run("- connect:\n- chat: {timeout: 0.1s, expect: timeout}")
    assert {"1": "passed", "2": "failed"} == ran.statuses
    assert "every reply was complete" in ran.step("2").message


async def test_chat_queued_while_disconnected_is_answered_after_the_resume() -> None:
    """A queued message passes while disconnected and is stored once the session resumes."""
    ran = await run(
        """
        - connect:
        - chat: 1
        - drop: close
        - chat: {text: "sent while away", expect: queued}
        - resume: full
        - expect:
            history: {count: 4, contains: ["sent while away"]}
        """
    )
    assert passed("1", "2", "3", "4", "5", "6") == ran.statuses


async def test_chat_queued_fails_while_connected() -> None:
    """``expect: queued`` fails when the client was connected."""
    ran = await run("- connect:\n- chat: {expect: queued}")
    assert "failed" == ran.statuses["2"]
    assert "the client was connected" in ran.step("2").message


async def test_chat_fails_without_a_connection() -> None:
    """A chat on a dropped connection fails: no reply can come."""
    ran = await run("- connect:\n- drop: close\n- chat: 1")
    assert "failed" == ran.statuses["3"]
    assert [("chat", False)] == ran.verdicts("3")


# --- send -----------------------------------------------------------------------------------------


async def test_send_gets_the_error_a_malformed_frame_deserves() -> None:
    """A raw frame that is not JSON is answered with the error the step expects."""
    ran = await run("- connect:\n- send: {frame: 'not json', expect_error: malformed_json}")
    assert passed("1", "2") == ran.statuses


async def test_send_of_a_binary_frame_gets_an_error_and_a_close() -> None:
    """A binary frame is answered with an error and the close code the step expects."""
    ran = await run(
        """
        - connect:
        - send: {frame: "x", binary: true, expect_error: binary_frame, expect_close: 1003}
        """
    )
    assert passed("1", "2") == ran.statuses


async def test_send_fails_when_the_answer_differs() -> None:
    """A raw frame answered with another error than expected fails the step."""
    ran = await run("- connect:\n- send: {frame: 'not json', expect_error: unknown_type}")
    assert "failed" == ran.statuses["2"]
    assert "error malformed_json" in ran.step("2").seen


# --- drop, every how ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_drop_of_the_clients_own_connection_resumes_in_full(how: str) -> None:
    """A clean close or a reset is recorded as such and the session resumes in full."""
    ran = await run(
        f"""
        - connect:
        - chat: 2
        - drop: {how}
        - resume: full
        - expect:
            delivery: {{}}
        """
    )
    assert passed("1", "2", "3", "4", "5") == ran.statuses
    assert [how] == [b.how for _, b in bodies(ran.history.ops, Disconnect)]


async def test_drop_half_open_blackholes_until_heal() -> None:
    """On a half-open link nothing is answered; after heal the resume answers what was sent."""
    ran = await run(
        """
        - connect:
        - drop: half_open
        - chat: {text: "into the void", timeout: 0.1s, expect: timeout}
        - heal:
        - resume: full
        - expect:
            history: {count: 2, contains: ["into the void"]}
        """
    )
    assert passed("1", "2", "3", "4", "5", "6") == ran.statuses


async def test_drop_half_open_for_a_duration_is_found_by_the_heartbeat() -> None:
    """A half-open link kept past the heartbeat timeout is closed by the server, then healed."""
    ran = await run(
        """
        - connect:
        - drop: {how: half_open, duration: 40s}
        - expect:
            metrics:
              - {name: ws_heartbeat_timeouts_total, value: "== 1"}
        - resume: full
        """
    )
    assert passed("1", "2", "3", "4") == ran.statuses


async def test_drop_proxy_down_for_a_duration_then_resume() -> None:
    """The proxy comes back after the drop's duration and the session resumes in full."""
    ran = await run("- connect:\n- drop: {how: proxy_down, duration: 15s}\n- resume: full")
    assert passed("1", "2", "3") == ran.statuses
    actions = [b.action for _, b in bodies(ran.history.ops, FaultAction)]
    assert ["down", "up"] == actions


async def test_drop_server_restart_keeps_the_stored_session() -> None:
    """After a restart the session, its history and context come back from the store."""
    ran = await run(
        """
        - connect:
        - chat: {text: "my name is Ada"}
        - snapshot: before
        - drop: server_restart
        - resume: full
        - expect:
            history: {count: 2}
            context: {equals: before}
            metrics:
              - {name: ws_sessions_opened_total, value: "== 0"}
        """
    )
    assert passed("1", "2", "3", "4", "5", "6") == ran.statuses
    assert 1 == len(ran.ops(Restart))
    assert 1 == ran.world.restarts


# --- fault, heal ----------------------------------------------------------------------------------


async def test_fault_latency_slows_every_reply() -> None:
    """A latency toxic delays the replies, and the latency expectation sees it."""
    ran = await run(
        """
        - connect:
        - fault: {toxic: latency, latency: 40ms}
        - chat: {messages: 2, timeout: 1s}
        - expect:
            latency:
              - {operation: chat, p50: "> 0.04s", max: "< 1s"}
        """
    )
    assert passed("1", "2", "3", "4") == ran.statuses


async def test_fault_with_a_duration_is_removed_after_it() -> None:
    """A toxic with a duration is removed after it; removing a blackhole closes its link."""
    ran = await run(
        """
        - connect:
        - fault: {toxic: timeout, timeout: 0s, duration: 0.05s}
        - chat: {timeout: 0.5s, expect: timeout}
        - resume: full
        """
    )
    assert passed("1", "2", "3", "4") == ran.statuses
    actions = [b.action for _, b in bodies(ran.history.ops, FaultAction)]
    assert ["add_toxic", "remove_toxic"] == actions


async def test_fault_the_memory_network_cannot_play_is_an_infrastructure_error() -> None:
    """A toxic the memory fault layer lacks is refused, recorded as failed, and not blamed on
    the target."""
    history_of: list[History] = []

    def keep(world: MemoryWorld, faults: MemoryFaults) -> None:
        history_of.append(faults.history)

    with pytest.raises(FaultUnsupportedError, match="slow_close"):
        await run("- connect:\n- fault: {toxic: slow_close, delay: 10ms}", prepare=keep)
    failed = [op for op in history_of[0].ops if op.process == "fault" and op.phase == "fail"]
    assert 1 == len(failed)


async def test_heal_brings_the_proxy_back() -> None:
    """After heal, a session cut by the proxy going down resumes in full."""
    ran = await run("- connect:\n- drop: proxy_down\n- heal:\n- resume: full")
    assert passed("1", "2", "3", "4") == ran.statuses


async def test_fault_actions_are_recorded_as_invocations_and_completions() -> None:
    """Every fault action is an invocation of process ``fault`` completed ok, as Toxiproxy's."""
    ran = await run(
        "- connect:\n- drop: half_open\n- heal:\n- fault: {toxic: latency, latency: 1ms}\n- heal:"
    )
    faults = [(op.phase, body.action) for op, body in bodies(ran.history.ops, FaultAction)]
    assert [
        ("invoke", "half_open"),
        ("invoke", "heal"),
        ("invoke", "add_toxic"),
        ("invoke", "heal"),
    ] == faults
    for op in ran.ops(FaultAction):
        done = completion(ran.history.ops, op.id)
        assert done is not None
        assert "ok" == done.phase


# --- wait -----------------------------------------------------------------------------------------


async def test_wait_moves_the_virtual_clock() -> None:
    """A virtual wait advances the world's clock; a 2 min gap resumes degraded."""
    world = MemoryWorld()
    start = world.now
    ran = await run(
        """
        - connect:
        - drop: close
        - wait: 2m
        - resume: {expect: degraded, warnings: [replay_window_passed]}
        """,
        world=world,
    )
    assert passed("1", "2", "3", "4") == ran.statuses
    assert 120.0 == world.now - start
    assert 120.0 == ran.runner.virtual_seconds
    assert [120.0] == [b.seconds for _, b in bodies(ran.history.ops, AdvanceClock)]


async def test_wait_on_the_real_clock_sleeps() -> None:
    """A real-clock wait sleeps and is recorded as such."""
    ran = await run("- wait: 0.01s", clock="real")
    assert passed("1") == ran.statuses
    assert [0.01] == [b.seconds for _, b in bodies(ran.history.ops, RealWait)]


# --- change_ip ------------------------------------------------------------------------------------


async def test_change_ip_by_forwarded_for_gives_a_notice() -> None:
    """A resume from another X-Forwarded-For address is allowed with a security notice."""
    ran = await run(
        """
        - change_ip: {forwarded_for: 198.51.100.7}
        - connect:
        - drop: reset
        - change_ip: {forwarded_for: 203.0.113.9}
        - resume: full
        - expect:
            resume: {outcome: full, notice: true}
        """
    )
    assert passed("1", "2", "3", "4", "5", "6") == ran.statuses


async def test_change_ip_by_source_address_on_the_direct_route_gives_a_notice() -> None:
    """A resume from another source address (direct route) is allowed with a notice."""
    ran = await run(
        """
        - connect:
        - drop: reset
        - change_ip: {source: 127.0.0.2}
        - resume: full
        - expect:
            resume: {notice: true}
        """,
        clients="clients:\n  - {name: client, route: direct}\n",
    )
    assert passed("1", "2", "3", "4", "5") == ran.statuses


async def test_change_ip_by_source_address_through_the_proxy_fails() -> None:
    """``source`` on a proxied client cannot work, and the step says why."""
    sc = m.Scenario(name="unit", steps=(m.Connect(), m.ChangeIp(source="127.0.0.2")))
    ran = await run(sc)
    assert {"1": "passed", "2": "failed"} == ran.statuses
    assert "direct route" in ran.step("2").message


# --- resume ---------------------------------------------------------------------------------------


async def test_resume_after_the_resumable_window_is_rejected_as_expired() -> None:
    """Past the resumable window the resume is rejected for the expected reason."""
    ran = await run(
        """
        - connect:
        - drop: close
        - wait: 10m
        - resume: {expect: rejected, reason: session_expired}
        """
    )
    assert passed("1", "2", "3", "4") == ran.statuses


async def test_resume_fails_when_the_outcome_differs() -> None:
    """A resume expected full that came back degraded fails the step."""
    ran = await run("- connect:\n- drop: close\n- wait: 2m\n- resume: full")
    assert "failed" == ran.statuses["4"]
    assert "degraded" in ran.step("4").seen


async def test_resume_fails_when_the_rejection_reason_differs() -> None:
    """A rejection for another reason than the expected one fails the step."""
    ran = await run(
        """
        - connect:
        - drop: close
        - wait: 10m
        - resume: {expect: rejected, reason: token_reused}
        """
    )
    assert "failed" == ran.statuses["4"]
    assert "rejection reason token_reused" == ran.step("4").expected


async def test_resume_fails_when_the_warnings_differ() -> None:
    """A degraded resume with other warnings than the expected ones fails the step."""
    ran = await run(
        """
        - connect:
        - drop: close
        - wait: 2m
        - resume: {expect: degraded, warnings: [epoch_changed]}
        """
    )
    assert "failed" == ran.statuses["4"]


async def test_resume_with_the_previous_token_revokes_the_session() -> None:
    """A replayed resume token is rejected as reused and the session is revoked."""
    ran = await run(
        """
        - connect: {client: user}
        - chat: {client: user, messages: 2}
        - drop: {client: user, how: reset}
        - resume: {client: user, expect: full}
        - drop: {client: user, how: reset}
        - resume: {client: user, token: previous, expect: rejected, reason: token_reused}
        - resume: {client: user, expect: rejected, reason: session_revoked}
        """,
        clients="clients:\n  - name: user\n  - name: thief\n",
    )
    assert passed("1", "2", "3", "4", "5", "6", "7") == ran.statuses


async def test_resume_of_another_clients_session_takes_it_over() -> None:
    """A take-over moves the session; the first client is told why it was closed."""
    ran = await run(
        """
        - connect: {client: first}
        - chat: {client: first, messages: 2}
        - resume: {client: second, session_of: first, expect: full}
        - chat: {client: second, messages: 1}
        - expect:
            client: first
            resume: {closed: session_taken_over}
        - expect:
            client: second
            history: {count: 6}
        """,
        clients="clients:\n  - name: first\n  - {name: second, user: first}\n",
    )
    assert passed("1", "2", "3", "4", "5", "6") == ran.statuses


async def test_resume_expecting_unreachable_holds_while_the_proxy_is_down() -> None:
    """``expect: unreachable`` passes when the one attempt cannot connect."""
    ran = await run("- connect:\n- drop: proxy_down\n- resume: unreachable")
    assert passed("1", "2", "3") == ran.statuses


async def test_resume_expecting_unreachable_fails_when_the_target_answers() -> None:
    """``expect: unreachable`` fails when the resume got an answer."""
    ran = await run("- connect:\n- drop: close\n- resume: unreachable")
    assert "failed" == ran.statuses["3"]
    assert "resume full" == ran.step("3").seen


# --- reconnect_fresh, snapshot --------------------------------------------------------------------


async def test_reconnect_fresh_opens_a_session_with_nothing_in_it() -> None:
    """After a fresh reconnect the server's history of the new session is empty."""
    ran = await run("- connect:\n- chat: 2\n- reconnect_fresh:\n- expect:\n    history: {count: 0}")
    assert passed("1", "2", "3", "4") == ran.statuses


async def test_snapshot_records_what_it_read() -> None:
    """A snapshot names the operations that read its context, history and metrics."""
    ran = await run("- connect:\n- chat: 1\n- snapshot: now")
    assert passed("1", "2", "3") == ran.statuses
    (taken,) = [b for _, b in bodies(ran.history.ops, SnapshotTaken)]
    read = [taken.context_op, taken.history_op, taken.metrics_op]
    answers = [completion(ran.history.ops, i) for i in read if i is not None]
    kinds = [type(a.body) for a in answers if a is not None]
    assert [ContextValue, HistoryPage, MetricsValue] == kinds


async def test_snapshot_fails_when_it_cannot_read() -> None:
    """A snapshot of a disconnected client fails with the failed read as the reason."""
    ran = await run("- connect:\n- drop: close\n- snapshot: now")
    assert "failed" == ran.statuses["3"]
    assert [("action", False)] == ran.verdicts("3")


# --- repeat, parallel -----------------------------------------------------------------------------


async def test_repeat_runs_every_cycle() -> None:
    """A repeat runs its steps once per cycle, each with its own path."""
    ran = await run(
        """
        - connect:
        - repeat:
            times: 3
            steps:
              - drop: reset
              - resume: full
              - chat: 1
        - expect:
            history: {count: 6}
            delivery: {}
        """
    )
    cycles = [f"2.{c}.{s}" for c in (1, 2, 3) for s in (1, 2, 3)]
    assert passed("1", *cycles, "3") == ran.statuses


async def test_repeat_stops_at_the_first_failed_cycle() -> None:
    """A repeat whose cycle fails stops there and fails as a whole."""
    ran = await run(
        """
        - connect:
        - repeat:
            times: 3
            steps:
              - chat: 1
              - expect:
                  history: {count: 2}
        - chat: 1
        """
    )
    assert {
        "1": "passed",
        "2.1.1": "passed",
        "2.1.2": "passed",
        "2.2.1": "passed",
        "2.2.2": "failed",
        "2": "failed",
    } == ran.statuses
    assert "stopped at a failed step" == ran.step("2").message


async def test_parallel_runs_each_client_at_once() -> None:
    """Every client of a parallel step runs the steps, and the step passes when all did."""
    ran = await run(
        """
        - parallel:
            clients: 3
            steps:
              - connect:
              - chat: 1
              - expect:
                  delivery: {}
        - expect:
            metrics:
              - {name: ws_sessions_opened_total, value: "== 3"}
        """
    )
    per_client = [f"1.p{c}.{s}" for c in (1, 2, 3) for s in (1, 2, 3)]
    assert passed(*per_client, "2") == ran.statuses


async def test_parallel_fails_when_one_client_does() -> None:
    """A parallel step fails when any client's steps did, naming how many."""
    ran = await run(
        """
        - parallel:
            clients: 3
            steps:
              - connect:
              - chat: 1
              - expect:
                  delivery: {}
        """,
        prepare=tampered(losing(ReplyChunk, nth=2)),
    )
    assert "failed" == ran.statuses["1"]
    assert ran.step("1").message.startswith("1 of 3 clients failed")


# --- expect: delivery -----------------------------------------------------------------------------

CHAT_THEN_DELIVERY = """
- connect:
- chat: 2
- drop: reset
- resume: full
- chat: 1
- expect:
    delivery: {no_loss: true, no_duplicates: true, order: true}
"""


async def test_delivery_holds_across_a_resume() -> None:
    """Every position arrived once and in order across a drop and a resume."""
    ran = await run(CHAT_THEN_DELIVERY)
    assert [("delivery", True)] == ran.verdicts("6")


async def test_delivery_catches_a_lost_message() -> None:
    """A frame lost on the link, and never declared lost, fails delivery at its position."""
    ran = await run(CHAT_THEN_DELIVERY, prepare=tampered(losing(ReplyChunk, nth=2)))
    assert [("delivery", False)] == ran.verdicts("6")
    assert "position 2 never arrived" in ran.step("6").seen


async def test_delivery_catches_a_duplicate() -> None:
    """A frame delivered twice fails delivery, naming the doubled position."""
    ran = await run(CHAT_THEN_DELIVERY, prepare=tampered(doubling(ReplyChunk, nth=2)))
    assert [("delivery", False)] == ran.verdicts("6")
    assert "position 2 was delivered twice" in ran.step("6").seen


async def test_delivery_catches_a_reordering() -> None:
    """A frame overtaken by the next one fails delivery as a reordering."""
    ran = await run(CHAT_THEN_DELIVERY, prepare=tampered(reordering(nth=2)))
    assert [("delivery", False)] == ran.verdicts("6")
    assert "position 2 arrived after 3" in ran.step("6").seen


async def test_delivery_catches_a_protocol_violation() -> None:
    """A frame that is no message of the protocol fails delivery as a violation."""
    ran = await run(CHAT_THEN_DELIVERY, prepare=tampered(garbling()))
    assert [("delivery", False)] == ran.verdicts("6")
    assert "broke the protocol" in ran.step("6").seen


async def test_delivery_may_ignore_what_it_is_told_to() -> None:
    """With every part turned off, a duplicate does not fail delivery."""
    ran = await run(
        CHAT_THEN_DELIVERY.replace(
            "no_loss: true, no_duplicates: true, order: true", "no_duplicates: false"
        ),
        prepare=tampered(doubling(ReplyChunk, nth=2)),
    )
    assert [("delivery", True)] == ran.verdicts("6")


# --- expect: history ------------------------------------------------------------------------------

CHAT_THEN_HISTORY = """
- connect:
- chat: {text: "first"}
- chat: {text: "second"}
- expect:
    history: {count: 4, contains: ["second"]}
"""


async def test_history_holds_every_sent_message_once_in_order() -> None:
    """The stored conversation has every message, once, in order, with its text."""
    ran = await run(CHAT_THEN_HISTORY)
    assert [("history", True), ("delivery", True)] == ran.verdicts("4")


async def test_history_fails_on_a_wrong_count() -> None:
    """A stored conversation of another length than expected fails."""
    ran = await run(CHAT_THEN_HISTORY.replace("count: 4", "count: 5"))
    assert ("history", False) == ran.verdicts("4")[0]
    assert "holds 4 turns, expected 5" in ran.step("4").seen


async def test_history_fails_when_a_text_is_missing() -> None:
    """A conversation without the expected text fails."""
    ran = await run(CHAT_THEN_HISTORY.replace('["second"]', '["third"]'))
    assert "no stored turn contains 'third'" in ran.step("4").seen


@pytest.mark.parametrize(
    ("change", "seen"),
    [
        (lambda p: p.entries[2:], "is not in the server's history"),
        (lambda p: (p.entries[0], *p.entries), "is stored 2 times"),
        (lambda p: tuple(reversed(p.entries)), "out of order"),
        (
            lambda p: (msgspec.structs.replace(p.entries[0], text="changed"), *p.entries[1:]),
            "is stored as 'changed'",
        ),
    ],
    ids=["loss", "duplicate", "order", "text"],
)
async def test_history_catches_what_a_broken_store_answers(
    change: Callable[[ConversationHistory], tuple[object, ...]], seen: str
) -> None:
    """A history page that lost, doubled, reordered or changed a turn fails the check."""

    def rewrite(page: ConversationHistory) -> ConversationHistory:
        return msgspec.structs.replace(page, entries=change(page))

    ran = await run(
        CHAT_THEN_HISTORY.replace("count: 4, ", ""), prepare=tampered(rewriting_history(rewrite))
    )
    assert ("history", False) == ran.verdicts("4")[0]
    assert seen in ran.step("4").seen


# --- expect: context ------------------------------------------------------------------------------


async def test_context_equals_its_snapshot() -> None:
    """The context after a drop and resume equals the snapshot before."""
    ran = await run(
        """
        - connect:
        - chat: {text: "my name is Ada"}
        - snapshot: before
        - drop: reset
        - resume: full
        - expect:
            context: {equals: before}
        """
    )
    assert [("context", True)] == ran.verdicts("6")


async def test_context_fails_when_it_changed() -> None:
    """A context changed since its snapshot fails ``equals``, naming what differs."""
    ran = await run(
        """
        - connect:
        - chat: {text: "my name is Ada"}
        - snapshot: before
        - chat: {text: "my name is Bob"}
        - expect:
            context: {equals: before, keys: [memory]}
        """
    )
    assert [("context", False)] == ran.verdicts("5")
    assert "memory.name" in ran.step("5").seen


@pytest.mark.parametrize(("threshold", "status"), [(">= 0.5", "passed"), ("== 1.0", "failed")])
async def test_context_preserved_is_a_share(threshold: str, status: str) -> None:
    """``preserved`` passes when the kept share meets its threshold and fails when not."""
    ran = await run(
        f"""
        - connect:
        - chat: {{text: "my name is Ada; I prefer tea"}}
        - snapshot: before
        - chat: {{text: "my name is Bob"}}
        - expect:
            context: {{preserved: "{threshold}", against: before, keys: [memory, preferences]}}
        """
    )
    assert status == ran.statuses["5"]


# --- expect: resume -------------------------------------------------------------------------------


async def test_expect_resume_holds_for_the_last_resume() -> None:
    """The last resume's outcome and warnings are what the expectation says."""
    ran = await run(
        """
        - connect:
        - drop: close
        - wait: 2m
        - resume: degraded
        - expect:
            resume: {outcome: degraded, warnings: [replay_window_passed], notice: false}
        """
    )
    assert [("resume", True)] == ran.verdicts("5")


@pytest.mark.parametrize(
    ("expectation", "seen"),
    [
        ("{outcome: full}", "last resume was degraded"),
        ("{warnings: []}", "warnings ['replay_window_passed']"),
        ("{notice: true}", "0 notices"),
        ("{closed: session_taken_over}", "connection closed with None"),
    ],
    ids=["outcome", "warnings", "notice", "closed"],
)
async def test_expect_resume_fails_on_each_part(expectation: str, seen: str) -> None:
    """Each part of a resume expectation that does not hold fails the step."""
    ran = await run(
        f"""
        - connect:
        - drop: close
        - wait: 2m
        - resume: degraded
        - expect:
            resume: {expectation}
        """
    )
    assert [("resume", False)] == ran.verdicts("5")
    assert seen in ran.step("5").seen


async def test_expect_resume_fails_when_no_resume_happened() -> None:
    """A resume expectation with no resume in the history fails."""
    ran = await run("- connect:\n- expect:\n    resume: {outcome: any}")
    assert "no resume happened" == ran.step("2").seen


async def test_windows_catch_an_outcome_the_advertised_windows_forbid() -> None:
    """A full resume after a gap past the full window fails the windows check."""
    ran = await run(
        "- connect:\n- drop: close\n- wait: 2m\n- resume: full",
        prepare=tampered(claiming_full_resumes()),
    )
    assert [("windows", False)] == ran.verdicts("4")
    assert "say degraded" in ran.step("4").seen


async def test_windows_agree_with_an_honest_outcome() -> None:
    """A full resume within the full window passes the windows check beside it."""
    ran = await run("- connect:\n- drop: close\n- wait: 5s\n- resume: full")
    assert [("resume", True), ("windows", True)] == ran.verdicts("4")


# --- expect: latency, metrics ---------------------------------------------------------------------


@pytest.mark.parametrize(("bound", "status"), [("< 1s", "passed"), ("< 1ms", "failed")])
async def test_latency_is_judged_on_recorded_durations(bound: str, status: str) -> None:
    """A latency bound passes or fails on the durations of the recorded operations."""
    ran = await run(
        f"""
        - connect:
        - fault: {{toxic: latency, latency: 5ms}}
        - chat: 2
        - expect:
            latency:
              - {{operation: chat, max: "{bound}"}}
        """
    )
    assert status == ran.statuses["4"]


async def test_latency_fails_with_nothing_measured() -> None:
    """A latency bound over an operation that never ran fails."""
    ran = await run(
        "- connect:\n- expect:\n    latency:\n      - {operation: history, max: '< 1s'}"
    )
    assert "no completed history operation was measured" == ran.step("2").seen


@pytest.mark.parametrize(("bound", "status"), [("== 1", "passed"), ("== 2", "failed")])
async def test_metric_value_is_judged_on_the_targets_answer(bound: str, status: str) -> None:
    """A metric's value passes or fails its threshold."""
    ran = await run(
        f"""
        - connect:
        - expect:
            metrics:
              - {{name: ws_sessions_opened_total, value: "{bound}"}}
        """
    )
    assert status == ran.statuses["2"]


@pytest.mark.parametrize(("bound", "status"), [("> 10%", "passed"), ("< 1%", "failed")])
async def test_metric_growth_between_snapshots(bound: str, status: str) -> None:
    """A metric's growth between two snapshots passes or fails its threshold."""
    ran = await run(
        f"""
        - connect:
        - chat: 1
        - snapshot: start
        - chat: 3
        - snapshot: end
        - expect:
            metrics:
              - {{name: ws_messages_sent_total, growth: "{bound}", between: [start, end]}}
        """
    )
    assert status == ran.statuses["6"]


async def test_metric_growth_since_the_start_of_the_run() -> None:
    """Without ``between``, growth runs from the reading taken before the first step."""
    ran = await run(
        """
        - connect:
        - expect:
            metrics:
              - {name: ws_connections_opened_total, growth: "> 0%"}
        """
    )
    # The baseline was 0: growth from 0 is infinite, which "> 0%" accepts.
    assert [("metrics", True)] == ran.verdicts("2")


async def test_metric_that_the_target_lacks_fails() -> None:
    """A metric the target does not serve fails the expectation."""
    ran = await run("- expect:\n    metrics:\n      - {name: no_such_metric, value: '== 0'}")
    assert "metric no_such_metric not found" == ran.step("1").seen


# --- expect: must_fail ----------------------------------------------------------------------------


async def test_must_fail_passes_when_a_check_catches_the_fault() -> None:
    """An inverted expectation passes when its check fails (the planted fault is caught)."""
    ran = await run(
        CHAT_THEN_DELIVERY.replace("order: true}", "order: true}\n    must_fail: true"),
        prepare=tampered(doubling(ReplyChunk, nth=2)),
    )
    assert "passed" == ran.statuses["6"]
    assert [("delivery (must fail)", False), ("must fail", True)] == ran.verdicts("6")


async def test_must_fail_fails_when_every_check_passes() -> None:
    """An inverted expectation fails when nothing was caught."""
    ran = await run(CHAT_THEN_DELIVERY.replace("order: true}", "order: true}\n    must_fail: true"))
    assert "failed" == ran.statuses["6"]
    assert [("delivery (must fail)", True), ("must fail", False)] == ran.verdicts("6")


# --- the seed suite -------------------------------------------------------------------------------

SEED = sorted((Path(__file__).parents[3] / "scenarios" / "seed").glob("*.yaml"))
NEEDS_THE_EMBEDDED_SERVER = {"07_harness_catches_faults.yaml"}  # a planted fault
SLOWER_THAN_A_SECOND = {"06_client_errors.yaml"}  # waits out a 1 s chat timeout on purpose


@pytest.mark.parametrize(
    "path",
    [p for p in SEED if p.name not in NEEDS_THE_EMBEDDED_SERVER | SLOWER_THAN_A_SECOND],
    ids=lambda p: p.stem,
)
async def test_a_seed_scenario_passes_on_the_memory_world(path: Path) -> None:
    """A seed scenario the memory world can run passes there, step for step."""
    sc = load(path)
    decided = plan(sc, driver=factory.info.capabilities, target=MemoryTarget.capabilities)
    assert decided.clock is not None
    ran = await run(sc, clock=decided.clock)
    assert [] == [(s.path, s.message) for s in ran.steps if s.status != "passed"]


@pytest.mark.parametrize("name", sorted(NEEDS_THE_EMBEDDED_SERVER))
async def test_a_seed_scenario_with_a_planted_fault_is_skipped_on_the_memory_world(
    name: str,
) -> None:
    """A scenario that needs the embedded reference server's planted faults is skipped before
    it starts, for lack of the ``embedded`` target capability."""
    sc = load(next(p for p in SEED if p.name == name))
    decided = plan(sc, driver=factory.info.capabilities, target=MemoryTarget.capabilities)
    assert ["embedded"] == [missing.capability for missing in decided.missing]


# --- checks that catch more: resends, paging ------------------------------------------------------


async def test_a_resent_message_is_answered_once_under_either_number() -> None:
    """Resent under its own seq (only acked) or a new one (answered duplicate), a message is
    processed once: the chat steps pass and the history holds each message once."""
    ran = await run(
        """
        - connect:
        - chat: {messages: 2, resend: same_seq}
        - chat: {messages: 1, resend: new_seq}
        - expect:
            history: {count: 6}
        """
    )
    assert passed("1", "2", "3", "4") == ran.statuses
    assert "2 message(s) answered, resent (same_seq), not processed again" == ran.step("2").message


async def test_a_renumbered_resend_without_a_duplicate_answer_fails() -> None:
    """A server that does not answer a renumbered resend with `duplicate` fails the chat step."""
    from reference_server.protocol.messages import Duplicate

    ran = await run(
        "- connect:\n- chat: {messages: 1, resend: new_seq}",
        prepare=tampered(losing(Duplicate, nth=1)),
    )
    assert "failed" == ran.step("2").status
    assert ran.step("2").seen.startswith("no `duplicate` answer to ")


async def test_history_read_in_small_pages_is_judged_whole() -> None:
    """Read three turns a page, ten turns come back whole and in order."""
    ran = await run("- connect:\n- chat: 5\n- expect:\n    history: {count: 10, page_size: 3}")
    assert passed("1", "2", "3") == ran.statuses
    pages = [op.body for op in ran.ops(FetchHistory) if op.phase == "invoke"]
    assert [FetchHistory(page_size=3)] == pages


async def test_a_page_that_drops_its_oldest_entry_fails_the_history_check() -> None:
    """A server whose pages each lose their oldest entry (an off-by-one in paging) fails."""

    def drop_oldest(page: ConversationHistory) -> ConversationHistory:
        return msgspec.structs.replace(page, entries=page.entries[1:])

    ran = await run(
        "- connect:\n- chat: 5\n- expect:\n    history: {count: 10, page_size: 3}",
        prepare=tampered(rewriting_history(drop_oldest)),
    )
    assert "failed" == ran.step("3").status
    assert ran.step("3").seen.startswith("the server holds ")


async def test_the_store_check_sees_a_live_session_and_an_expired_one() -> None:
    """A live session is stored; one expired by a 10 min gap has no row left; asking a live
    session to be gone fails (shown through must_fail)."""
    ran = await run(
        """
        - connect:
        - chat: 1
        - expect:
            store: {gone: false}
        - expect:
            store: {gone: true}
            must_fail: true
        - drop: close
        - wait: 10m
        - resume: {expect: rejected, reason: session_expired}
        - expect:
            store: {gone: true}
        """
    )
    assert passed("1", "2", "3", "4", "5", "6", "7", "8") == ran.statuses
    assert ("store (must fail)", False) == ran.verdicts("4")[0]


# --- race -----------------------------------------------------------------------------------------


RACERS = (
    "clients:\n  - name: holder\n  - {name: one, user: holder}\n  - {name: two, user: holder}\n"
)


async def test_race_of_two_resumes_leaves_one_holder_who_chats() -> None:
    """Two resumes of the holder's session at once on one server: both are accepted in turn,
    the first connection is closed as taken over, and the second one's message is answered."""
    ran = await run(
        """
        - connect: {client: holder}
        - chat: {client: holder, messages: 1}
        - drop: {client: holder, how: close}
        - race: {session_of: holder, clients: [one, two]}
        """,
        clients=RACERS,
    )
    race = ran.step("4")
    assert passed("1", "2", "3", "4") == ran.statuses, race.message
    # One process decides them in turn: the second takes the session over from the first.
    assert ("taken over", "two") == (
        race.verdicts[0].evidence["kind"],
        race.verdicts[0].evidence["holder"],
    )
    assert [("race", True), ("chat", True)] == ran.verdicts("4")


async def test_race_catches_a_doubled_delivery() -> None:
    """A reply chunk doubled on its way to the racer that holds the session fails the race
    step's delivery check, though the race itself was decided right."""
    ran = await run(
        """
        - connect: {client: holder}
        - race: {session_of: holder, clients: [one, two], messages: 1}
        """,
        clients=RACERS,
        prepare=tampered(doubling()),
    )
    assert "failed" == ran.step("2").status
    assert [("race", True), ("delivery", False)] == ran.verdicts("2")[:2]


async def test_racers_take_the_session_over_afresh_in_every_round() -> None:
    """A racer that held an earlier session takes the next one over with the holder's
    numbering, not its own: round after round the winner's message is answered (it was
    closed with a protocol error when its requests of the old session were sent again)."""
    ran = await run(
        """
        - repeat:
            times: 3
            steps:
              - connect: {client: holder}
              - chat: {client: holder, messages: 2}
              - drop: {client: holder, how: close}
              - race: {session_of: holder, clients: [one, two], messages: 2}
        """,
        clients=RACERS,
    )
    races = [s for s in ran.steps if s.kind == "race"]
    assert ["passed"] * 3 == [s.status for s in races], [s.message for s in races]
    assert [("race", True), ("chat", True)] * 3 == [
        (v.check, v.passed) for s in races for v in s.verdicts
    ]
