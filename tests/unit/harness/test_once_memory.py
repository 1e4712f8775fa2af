"""`once` inside `parallel`, on the memory driver: one gate for the herd, every wait bounded.

The runner and the judge as in test_runner_memory.py (no sockets, no Toxiproxy); the gate
itself (``harness.herd.Herd``) also alone, with clients that never come.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Sequence

import pytest

from harness.herd import Herd, gate_key
from harness.history import AwaitHerd, FaultAction, StepStart
from harness.recheck import rejudge_steps
from harness.results import ScenarioResult
from harness.scenario import Problem, ScenarioError, load_text
from harness.scenario import model as m
from harness.scenario.durations import Duration
from harness.targets.memory import Tamper
from reference_server.protocol import codec
from reference_server.protocol.messages import ReplyChunk
from tests.unit.harness.test_runner_memory import Ran, run, tampered

pytestmark = [pytest.mark.timeout(5)]

HERD = """
- parallel:
    clients: 4
    user_prefix: h
    steps:
      - connect:
      - chat: {{messages: 1, timeout: {chat_timeout}}}
      - once:
          within: {within}
          steps:
            - drop: {{how: proxy_down, duration: 15s}}
      - resume: full
      - chat: 1
      - expect:
          delivery: {{no_loss: true, no_duplicates: true, order: true}}
- expect:
    metrics:
      - {{name: ws_sessions_opened_total, value: "== 4"}}
"""


def downs(ran: Ran) -> list[FaultAction]:
    return [
        op.body
        for op in ran.ops(FaultAction)
        if isinstance(op.body, FaultAction) and op.body.action == "down"
    ]


def rechecked(ran: Ran, scenario: m.Scenario) -> dict[str, str]:
    """The statuses ``harness check`` derives from the run's history alone."""
    result = ScenarioResult(
        name="unit", file="", status="passed", scenario=scenario, history=ran.history.ops
    )
    return {s.path: s.status for s in rejudge_steps(result)}


def losing_first_final_chunk() -> Tamper:
    """Lose the last chunk of the first reply the server sends: that client's chat times out."""
    lost = False

    def tamper(frame: bytes) -> Sequence[bytes]:
        nonlocal lost
        message = codec.decode_server(frame)
        if not lost and isinstance(message, ReplyChunk) and message.final:
            lost = True
            return []
        return [frame]

    return tamper


def herd_scenario(within: str = "30s", chat_timeout: str = "5s") -> m.Scenario:
    text = HERD.format(within=within, chat_timeout=chat_timeout)
    body = textwrap.indent(textwrap.dedent(text).strip("\n"), "  ")
    return load_text(f"name: unit\nclock: virtual\nsteps:\n{body}\n")


@pytest.mark.asyncio
async def test_once_takes_the_proxy_down_one_time_for_the_whole_herd() -> None:
    """Four clients reach `once`; its drop runs one time, after all four arrived and before
    any goes on; every client then resumes in full and the server counts 4 sessions."""
    scenario = herd_scenario()
    ran = await run(scenario)
    clients = [f"h{i}" for i in (1, 2, 3, 4)]
    every = {f"1.{c}.{s}": "passed" for c in clients for s in range(1, 7)}
    assert {**every, "1.once.3.1": "passed", "2": "passed"} == ran.statuses
    assert 1 == len(downs(ran))
    ops = ran.history.ops
    waits = [op for op in ops if isinstance(op.body, AwaitHerd)]
    (drop,) = [op for op in ops if isinstance(op.body, StepStart) and op.body.path == "1.once.3.1"]
    arrivals = [op.index for op in waits]
    ids = {op.id for op in waits}
    releases = [op.index for op in ops if op.id in ids and op.phase == "ok"]
    assert 4 == len(arrivals) == len(releases)
    assert max(arrivals) < drop.index < min(releases)
    assert {"1.once.3"} == {op.body.gate for op in waits}  # type: ignore[union-attr]
    assert {p: s for p, s in ran.statuses.items() if p != "1"} == rechecked(ran, scenario)


@pytest.mark.asyncio
async def test_a_client_that_fails_before_once_is_not_waited_for() -> None:
    """One client's chat fails before it reaches `once`: the gate opens for the three others
    at once (not after `within`, 60 s here, beyond the test's 5 s timeout), its drop runs one
    time, they pass, and the group fails naming the one."""
    scenario = herd_scenario("60s", chat_timeout="1s")
    ran = await run(scenario, prepare=tampered(losing_first_final_chunk()))
    failed = [s for s in ran.steps if s.status != "passed"]
    assert ["chat", "parallel"] == [s.kind for s in failed]
    assert ran.step("1").message.startswith("1 of 4 clients failed")
    assert 1 == len(downs(ran))
    once = [s for s in ran.steps if s.kind == "once"]
    assert 3 == len(once)
    assert all(s.status == "passed" for s in once)


@pytest.mark.asyncio
async def test_a_gate_that_waits_beyond_within_fails_every_client_and_runs_nothing() -> None:
    """With `within: 0s` the first client at the gate cannot wait for the others: its
    `once` fails saying who was still on the way, every later one fails the same, the proxy
    is never taken down, and `harness check` derives the same verdicts."""
    scenario = herd_scenario("0s")
    ran = await run(scenario)
    once = [s for s in ran.steps if s.kind == "once"]
    assert 4 == len(once)
    assert all(s.status == "failed" for s in once)
    assert "running clients reached `once` (1.once.3) within 0 s" in once[0].message
    assert [] == downs(ran)
    assert "failed" == ran.statuses["1"]
    judged = rechecked(ran, scenario)
    assert all(judged[s.path] == "failed" for s in once)


@pytest.mark.asyncio
async def test_failed_steps_of_once_fail_every_client_at_it() -> None:
    """A step of `once` that does not hold (a metric beyond its bound) fails that step and
    every client's `once`, and none of them goes on."""
    ran = await run(
        """
        - parallel:
            clients: 3
            steps:
              - connect:
              - once:
                  steps:
                    - expect:
                        metrics:
                          - {name: ws_sessions_opened_total, value: "== 99"}
              - chat: 1
        """
    )
    assert "failed" == ran.statuses["1.once.2.1"]
    once = [s for s in ran.steps if s.kind == "once"]
    assert 3 == len(once)
    assert all("the steps of `once` did not hold at step 1.once.2.1" in s.message for s in once)
    assert not [s for s in ran.steps if s.kind == "chat"]


@pytest.mark.asyncio
async def test_once_inside_repeat_is_one_gate_per_cycle() -> None:
    """In a `repeat` of the group's steps, each cycle's `once` is a gate of its own."""
    ran = await run(
        """
        - parallel:
            clients: 2
            steps:
              - connect:
              - repeat:
                  times: 3
                  steps:
                    - once:
                        steps:
                          - drop: {how: proxy_down, duration: 5s}
                    - resume: full
        """
    )
    assert all(s.status == "passed" for s in ran.steps)
    assert 3 == len(downs(ran))
    gates = {op.body.gate for op in ran.ops(AwaitHerd)}  # type: ignore[union-attr]
    assert {"1.once.2.1.1", "1.once.2.2.1", "1.once.2.3.1"} == gates


# --- the gate alone ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_gate_opens_when_every_client_arrived_or_left() -> None:
    """The gate's steps run once, after the last arrival or departure, and every waiting
    client gets their outcome."""
    ran: list[str] = []

    async def steps(key: str, once: m.Once) -> str | None:
        ran.append(key)
        return None

    once = m.Once(steps=(m.Heal(),))
    async with asyncio.TaskGroup() as group:
        herd = Herd(["a", "b", "c"], group, steps)
        a = group.create_task(herd.arrive("1.once.2", once, "a"))
        b = group.create_task(herd.arrive("1.once.2", once, "b"))
        await asyncio.sleep(0.01)
        assert [] == ran
        herd.leave("c")
    assert ["1.once.2"] == ran
    assert (None, None) == (a.result(), b.result())


@pytest.mark.asyncio
async def test_gate_gives_up_after_within_and_tells_late_clients() -> None:
    """A client that never comes makes the gate fail after `within`, for those there and
    for one that comes later; the steps never run."""
    ran: list[str] = []

    async def steps(key: str, once: m.Once) -> str | None:
        ran.append(key)
        return None

    once = m.Once(within=Duration(0.05), steps=(m.Heal(),))
    async with asyncio.TaskGroup() as group:
        herd = Herd(["a", "b", "c"], group, steps)
        first = await herd.arrive("k", once, "a")
        late = await herd.arrive("k", once, "b")
    assert first is not None
    assert "1 of 3 running clients reached `once` (k) within 0.05 s" in first
    assert "b, c" in first
    assert first == late
    assert [] == ran


def test_gate_key_drops_the_client_from_the_path() -> None:
    """Every client's `once` at the same place shares one gate."""
    assert "1.once.2.3.1" == gate_key("1", "p17", "1.p17.2.3.1")
    assert "4.once.2" == gate_key("4", "herd1", "4.herd1.2")


# --- loading -------------------------------------------------------------------------------


def problems(text: str) -> list[Problem]:
    with pytest.raises(ScenarioError) as caught:
        load_text(textwrap.dedent(text), "s.yaml")
    return list(caught.value.problems)


def test_once_outside_parallel_and_per_client_steps_inside_are_errors() -> None:
    """`once` at the top level, a client's step in it, a nested `once`: each named with its
    file, line, column and field."""
    found = problems(
        """\
        name: t
        steps:
          - once: {steps: [heal: ]}
          - parallel:
              clients: 2
              steps:
                - once:
                    steps:
                      - chat: 1
                      - drop: reset
                      - expect: {delivery: {}}
                      - once: {steps: [heal: ]}
        """
    )
    expected = [
        (3, 5, "steps[0]", "`once` only goes inside `parallel`"),
        (9, 17, "steps[1].steps[0].steps[0]", "`chat` acts on each client"),
        (10, 23, "steps[1].steps[0].steps[1].how", "`how: reset` acts on one client's"),
        (11, 17, "steps[1].steps[0].steps[2]", "an `expect` inside `once` is about the run"),
        (12, 17, "steps[1].steps[0].steps[3]", "`once` steps cannot be nested"),
    ]
    seen = [(p.line, p.column, p.field, p.message) for p in found]
    assert len(expected) == len(seen)
    for (line, column, field, start), problem in zip(expected, seen, strict=True):
        assert (line, column, field) == problem[:3]
        assert problem[3].startswith(start), problem[3]


def test_once_within_must_be_a_duration() -> None:
    """`within` is a duration like any other."""
    (problem,) = problems(
        """\
        name: t
        steps:
          - parallel:
              clients: 2
              steps:
                - once: {within: soon, steps: [heal: ]}
        """
    )
    assert "steps[0].steps[0].within" == problem.field
    assert 6 == problem.line
