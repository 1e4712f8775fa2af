"""A herd through a real Toxiproxy against the reference server: `once` in one process and
across worker processes, the 1000-client scenario of the chaos suite, Ctrl-C and a dead
worker with workers running.

Real Toxiproxy, real reference servers (embedded child processes), real worker processes,
the real command line.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import cli, exit_codes, results
from harness.history import AwaitHerd, Connect, FaultAction, Op, StepStart
from harness.results import ScenarioResult
from harness.workers import IDS_PER_WORKER
from tests.conftest import scaled
from tests.e2e.test_interrupt import (
    HARNESS,
    Child,
    api_url,
    children_of,
    get_json,
    poll,
    running,
)

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy]

ROOT = Path(__file__).resolve().parents[2]
HERD_OF_1000 = ROOT / "scenarios" / "chaos" / "07_herd_of_1000.yaml"

SMALL_HERD = """\
name: a small herd, one outage
clock: real
timeout: 60s
steps:
  - parallel:
      clients: {clients}
      steps:
        - connect:
        - chat: 1
        - once:
            within: {within}
            steps:
              - drop: {{how: proxy_down, duration: 2s}}
        - resume: full
        - chat: 1
        - expect:
            delivery: {{no_loss: true, no_duplicates: true, order: true, replies: true}}
  - expect:
      metrics:
        - {{name: ws_sessions_opened_total, value: "== {clients}"}}
"""


def run(tmp_path: Path, text: str, *args: str) -> tuple[int, ScenarioResult, dict[str, str]]:
    """``harness run`` of one scenario; its exit code, its result and the run's environment."""
    (tmp_path / "herd.yaml").write_text(text, encoding="utf-8")
    reports = tmp_path / "reports"
    code = cli.main(["run", str(tmp_path / "herd.yaml"), "--report-dir", str(reports), *args])
    record = results.read(reports / "latest" / "results.json")
    (scenario,) = record.scenarios
    return code, scenario, record.environment


def fault_actions(ops: list[Op]) -> list[str]:
    return [o.body.action for o in ops if isinstance(o.body, FaultAction) and o.phase == "invoke"]


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert exit_codes.OK == cli.main(
        ["check", str(tmp_path / "reports" / "latest" / "results.json")]
    )
    return capsys.readouterr().out


def assert_one_gate(ops: list[Op], clients: int) -> None:
    """Every client waited at the gate before its drop began, and was released after."""
    waits = [op for op in ops if isinstance(op.body, AwaitHerd)]
    assert clients == len(waits)
    ids = {op.id for op in waits}
    released = [op.index for op in ops if op.id in ids and op.phase == "ok"]
    (drop,) = [op for op in ops if isinstance(op.body, StepStart) and op.body.path == "1.once.3.1"]
    assert clients == len(released)
    assert max(op.index for op in waits) < drop.index < min(released)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_once_takes_the_proxy_down_one_time_for_the_whole_herd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    """Forty clients, in this process or spread over two workers: the proxy goes down and up
    one time, after every client arrived at `once` and before any went on; every client
    passes its delivery check, and `harness check` derives every verdict again."""
    text = SMALL_HERD.format(clients=40, within="30s")
    code, scenario, environment = run(tmp_path, text, "--workers", workers, "--spread-from", "10")
    assert exit_codes.OK == code, [s.message for s in scenario.steps if s.status != "passed"]
    assert ["create", "down", "up", "delete"] == fault_actions(scenario.history)
    assert_one_gate(scenario.history, 40)
    delivery = [s for s in scenario.steps if s.kind == "expect" and s.client]
    assert 40 == len(delivery)
    assert all(s.status == "passed" for s in delivery)
    spread = environment.get("spread", "")
    if workers == "2":
        assert "step 1: 40 clients in 2 worker processes" in spread
    else:
        assert "" == spread
    assert check(tmp_path, capsys).rstrip().endswith(", 0 differ")


def test_merged_history_is_one_history(tmp_path: Path) -> None:
    """The workers' operations merged into the scenario's history: numbered 0.. in time
    order, ids unique, each invocation completed once, every client's own lines in order."""
    text = SMALL_HERD.format(clients=30, within="30s")
    code, scenario, _ = run(tmp_path, text, "--workers", "2", "--spread-from", "10")
    assert exit_codes.OK == code
    ops = scenario.history
    assert list(range(len(ops))) == [op.index for op in ops]
    assert all(a.time <= b.time for a, b in itertools.pairwise(ops))
    invoked = [op.id for op in ops if op.phase == "invoke"]
    completed = [op.id for op in ops if op.phase in ("ok", "fail", "info")]
    assert len(set(invoked)) == len(invoked)
    assert sorted(invoked) == sorted(completed)
    events = [op.id for op in ops if op.phase == "event"]
    assert len(set(events)) == len(events)
    assert not set(events) & set(invoked)
    parent = {op.process for op in ops if op.id < 1_000_000_000}
    workers = {op.id // 1_000_000_000 for op in ops if op.id >= 1_000_000_000}
    assert {1, 2} == workers
    assert {"runner", "fault", "target", "clock"} >= parent - {"client"}


def test_a_gate_no_one_fills_in_time_fails_every_client_in_every_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`within: 0s` across two workers: no gate can fill; every client's `once` fails with
    the gate's reason, the proxy is never taken down, and the verdicts re-derive the same."""
    text = SMALL_HERD.format(clients=20, within="0s")
    code, scenario, _ = run(tmp_path, text, "--workers", "2", "--spread-from", "10")
    assert exit_codes.SCENARIO_FAILED == code
    once = [s for s in scenario.steps if s.kind == "once"]
    assert 20 == len(once)
    assert all("running clients reached `once` (1.once.3) within 0 s" in s.message for s in once)
    assert ["create", "delete"] == fault_actions(scenario.history)
    assert check(tmp_path, capsys).rstrip().endswith(", 0 differ")


CROWDED = """\
name: some clients cannot connect
clock: real
timeout: 60s
server_args: ["--max-sessions", "15"]
steps:
  - parallel:
      clients: 20
      steps:
        - connect:
        - chat: 1
        - once:
            within: 45s
            steps:
              - drop: {how: proxy_down, duration: 2s}
        - resume: full
        - expect:
            delivery: {no_loss: true, no_duplicates: true, order: true}
"""


def test_clients_that_fail_before_once_in_a_worker_are_not_waited_for(tmp_path: Path) -> None:
    """A server that holds 15 sessions: 5 of the 20 clients (spread over two workers) fail to
    connect and end; the gate opens for the 15 as soon as those have left (well before its
    45 s), its drop runs one time, the 15 pass, and the group fails naming the 5."""
    code, scenario, _ = run(tmp_path, CROWDED, "--workers", "2", "--spread-from", "10")
    assert exit_codes.SCENARIO_FAILED == code
    counts: dict[tuple[str, str], int] = {}
    for step in scenario.steps:
        counts[(step.kind, step.status)] = counts.get((step.kind, step.status), 0) + 1
    assert 5 == counts[("connect", "failed")]
    assert 15 == counts[("once", "passed")] == counts[("expect", "passed")]
    assert ["create", "down", "up", "delete"] == fault_actions(scenario.history)
    waits = [op for op in scenario.history if isinstance(op.body, AwaitHerd)]
    ids = {op.id for op in waits}
    ends = [op.time for op in scenario.history if op.id in ids and op.phase == "ok"]
    assert max(ends) - min(op.time for op in waits) < 30.0  # the outage's 2 s, not `within`


@pytest.mark.timeout(180)
def test_the_herd_of_1000_passes_with_every_clients_delivery_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """scenarios/chaos/07_herd_of_1000.yaml on both cores: one outage, 1000 resumes in full,
    1000 delivery checks and 1000 reply checks passed, re-derived from the merged history."""
    reports = tmp_path / "reports"
    code = cli.main(["run", str(HERD_OF_1000), "--report-dir", str(reports), "--workers", "2"])
    record = results.read(reports / "latest" / "results.json")
    (scenario,) = record.scenarios
    failed = [f"{s.path}: {s.message}" for s in scenario.steps if s.status != "passed"][:5]
    assert exit_codes.OK == code, failed or scenario.error
    assert ["create", "down", "up", "delete"] == fault_actions(scenario.history)
    checks = [v for s in scenario.steps if s.kind == "expect" and s.client for v in s.verdicts]
    assert {"delivery": 1000, "replies": 1000} == dict(Counter(v.check for v in checks))
    assert all(v.passed for v in checks)
    assert "1000 clients in 2 worker processes" in record.environment["spread"]
    capsys.readouterr()
    assert exit_codes.OK == cli.main(["check", str(reports / "latest" / "results.json")])
    assert capsys.readouterr().out.rstrip().endswith(", 0 differ")


def test_a_spread_herd_that_times_out_keeps_what_its_workers_recorded(tmp_path: Path) -> None:
    """A spread group still waiting when the scenario's timeout passes: the scenario errors
    as timed out, and its history still holds every client's connect and chat from the
    workers (each worker is closed and says what it recorded before it is stopped)."""
    text = WAITING_HERD.replace("timeout: 5m", "timeout: 6s")
    code, scenario, _ = run(tmp_path, text, *SPREAD_ALL)
    assert exit_codes.OK != code
    assert "timed out after 6 s" == scenario.error
    connects = [op for op in scenario.history if isinstance(op.body, Connect)]
    assert 8 == len(connects)
    assert {1, 2} == {op.id // IDS_PER_WORKER for op in connects}


# --- stopping ------------------------------------------------------------------------------

WAITING_HERD = """\
name: a herd that waits
clock: real
timeout: 5m
steps:
  - parallel:
      clients: 8
      steps:
        - connect:
        - chat: 1
        - wait: 2m
"""


SPREAD_ALL = ("--workers", "2", "--spread-from", "2")


@pytest.fixture
def herd_process(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``harness run`` of a spread herd that waits 2 min; whatever the test does, every
    process it started is killed by pid afterwards."""
    (tmp_path / "wait.yaml").write_text(WAITING_HERD, encoding="utf-8")
    process = subprocess.Popen(
        [HARNESS, "run", "wait.yaml", "--report-dir", "reports", *SPREAD_ALL],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    seen: list[Child] = []
    process.seen = seen  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        for child in [*seen, *children_of(process.pid)]:
            if running(child.pid):
                os.kill(child.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def waiting_children(process: subprocess.Popen[bytes]) -> list[Child]:
    """Toxiproxy, the reference server and both workers, once both workers' clients chat."""

    def all_there() -> list[Child] | None:
        children = children_of(process.pid)
        workers = [c for c in children if "harness.workers" in c.cmdline]
        server = [c for c in children if "reference_server" in c.cmdline]
        proxy = [c for c in children if "toxiproxy" in c.cmdline]
        return children if len(workers) == 2 and server and proxy else None

    children = poll("two workers, the server and Toxiproxy", all_there, scaled(20.0))
    process.seen.extend(children)  # type: ignore[attr-defined]
    return children


def assert_stopped(process: subprocess.Popen[bytes], children: list[Child], api: str) -> int:
    try:
        process.communicate(timeout=scaled(20.0))
    except subprocess.TimeoutExpired:
        pytest.fail("the harness was still running 20 s later")
    left: list[Child] = poll(
        "every child to exit",
        lambda: [] if not any(running(c.pid) for c in children) else None,
        scaled(5.0),
    )
    assert [] == left
    assert None is get_json(f"{api}/proxies")
    return process.returncode


def test_sigint_with_workers_running_stops_every_worker(
    herd_process: subprocess.Popen[bytes],
) -> None:
    """SIGINT to the harness while a herd waits in two workers: it exits (130) and takes
    Toxiproxy, the server and both workers with it (the workers are in their own session,
    so only the harness can stop them)."""
    children = waiting_children(herd_process)
    api = api_url(next(c for c in children if "toxiproxy" in c.cmdline))
    herd_process.send_signal(signal.SIGINT)
    assert exit_codes.INTERRUPTED == assert_stopped(herd_process, children, api)


def test_a_worker_killed_ends_the_scenario_as_an_infrastructure_error(
    herd_process: subprocess.Popen[bytes],
) -> None:
    """SIGKILL to one worker: the scenario ends at once as the harness's own failure (exit
    3, not a verdict on the target), and the other worker is stopped too."""
    children = waiting_children(herd_process)
    api = api_url(next(c for c in children if "toxiproxy" in c.cmdline))
    worker = next(c for c in children if "harness.workers" in c.cmdline)
    os.kill(worker.pid, signal.SIGKILL)
    assert exit_codes.INFRASTRUCTURE_ERROR == assert_stopped(herd_process, children, api)
