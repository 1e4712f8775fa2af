"""The runner end to end: scenario files through a real Toxiproxy to the real reference server.

Every scenario of the module runs in one suite (one Toxiproxy, one proxy and one reference
server per scenario, several at once); each test then reads what its scenario recorded. The
command-line tests at the end run ``harness run`` itself for exit codes and report files.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import cli, exit_codes
from harness.engine import Engine, RunOptions
from harness.history import (
    AwaitReply,
    Delivered,
    Disconnect,
    FaultAction,
    Resume,
    RouteChanged,
    SendMessage,
    durations,
)
from harness.results import RunResult, ScenarioResult, StepResult
from harness.scenario import Scenario, load

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy]

# Each scenario's `name` is its key here. Waits use the virtual clock unless they say otherwise.
SCENARIOS: dict[str, str] = {
    "drop-close": """
        steps:
          - connect:
          - chat: 2
          - snapshot: before
          - drop: close
          - wait: 5s
          - resume: full
          - expect:
              history: {count: 4}
              delivery: {no_loss: true, no_duplicates: true, order: true}
              context: {equals: before}
    """,
    "drop-reset": """
        steps:
          - connect:
          - chat: 2
          - snapshot: before
          - drop: reset
          - wait: 5s
          - resume: full
          - expect:
              context: {equals: before}
          - chat: 1
          - expect:
              history: {count: 6}
              delivery: {}
    """,
    # Data is blackholed both ways; only the server's heartbeat (timeout 30 s) can notice.
    "half-open": """
        steps:
          - connect:
          - chat: 2
          - drop: half_open
          - chat: {text: "into the void", timeout: 1s, expect: timeout}
          - expect:
              metrics:
                - {name: ws_heartbeat_timeouts_total, value: "== 0"}
          - wait: 45s
          - expect:
              metrics:
                - {name: ws_heartbeat_timeouts_total, value: "== 1"}
          - heal:
          - resume: full
          - expect:
              history: {count: 6, contains: ["into the void"]}
              delivery: {}
    """,
    # Ten facts make the recall a long reply (eight chunks, about 1 KB): at 1 KB/s it is still
    # streaming when the client gives up on it after 300 ms and resets. The resume goes through
    # the slow link and `heal` waits until after it, when what Toxiproxy held for the dead
    # connection has drained: removing a toxic with data in it can freeze Toxiproxy 2.12's API.
    "drop-mid-reply": """
        steps:
          - connect:
          - chat:
              text: >-
                remember that fact0 is value0; remember that fact1 is value1;
                remember that fact2 is value2; remember that fact3 is value3;
                remember that fact4 is value4; remember that fact5 is value5;
                remember that fact6 is value6; remember that fact7 is value7;
                remember that fact8 is value8; remember that fact9 is value9
          - fault: {toxic: bandwidth, rate_kbps: 1}
          - chat: {text: "what do you remember about me", timeout: 300ms, expect: timeout}
          - drop: reset
          - resume: {expect: full, timeout: 10s}
          - expect:
              metrics:
                - {name: ws_replayed_messages_total, value: ">= 1"}
          - chat: {messages: 1, timeout: 10s}
          - heal:
          - expect:
              history: {count: 6, contains: ["what do you remember about me"]}
              delivery: {}
    """,
    "proxy-down-for-15s": """
        steps:
          - connect:
          - chat: 2
          - drop: {how: proxy_down, duration: 15s}
          - resume: full
          - expect:
              history: {count: 4}
              delivery: {}
    """,
    "proxy-down-until-heal": """
        steps:
          - connect:
          - chat: 1
          - drop: proxy_down
          - resume: unreachable
          - chat: {text: "written while the network is gone", expect: queued}
          - heal:
          - resume: full
          - expect:
              history: {count: 4, contains: ["written while the network is gone"]}
              delivery: {}
    """,
    "server-restart": """
        steps:
          - connect:
          - chat: 3
          - chat: {text: "my name is Ada"}
          - snapshot: before
          - drop: server_restart
          - resume: full
          - expect:
              history: {count: 8}
              context: {equals: before}
              delivery: {}
              metrics:
                - {name: ws_sessions_opened_total, value: "== 0"}
    """,
    # The restarted process must go on from the virtual time the old one had reached.
    "server-restart-after-gaps": """
        steps:
          - connect:
          - chat: 2
          - drop: close
          - wait: 2m
          - drop: server_restart
          - resume: {expect: degraded, warnings: [replay_window_passed]}
          - drop: close
          - wait: 10m
          - drop: server_restart
          - resume: {expect: rejected, reason: session_expired}
    """,
    # Attached across the restart after the clock had moved: the gap is the restart's alone.
    "server-restart-while-attached-after-a-wait": """
        steps:
          - connect:
          - chat: 1
          - drop: close
          - wait: 2m
          - resume: {expect: degraded, warnings: [replay_window_passed]}
          - chat: 1
          - drop: server_restart
          - resume: full
          - expect:
              history: {count: 4}
              delivery: {}
    """,
    "latency": """
        steps:
          - connect:
          - fault: {toxic: latency, latency: 300ms, jitter: 50ms}
          - chat: {messages: 3, timeout: 10s}
          - heal:
          - expect:
              history: {count: 6}
              delivery: {}
              latency:
                - {operation: chat, p50: "> 0.2s", max: "< 5s"}
    """,
    "bandwidth": """
        steps:
          - connect:
          - chat: 3
          - fault: {toxic: bandwidth, rate_kbps: 1}
          - chat: {messages: 1, timeout: 10s}
          - snapshot: under_bandwidth
          - heal:
          - expect:
              history: {count: 8}
              delivery: {}
              latency:
                - {operation: history, max: "> 0.2s"}
    """,
    "slow-close": """
        steps:
          - connect:
          - chat: 1
          - fault: {toxic: slow_close, delay: 800ms}
          - drop: close
          - heal:
          - resume: full
          - chat: 1
          - expect:
              history: {count: 4}
              delivery: {}
    """,
    "timeout-toxic": """
        steps:
          - connect:
          - chat: 1
          - fault: {toxic: timeout, timeout: 1s}
          - chat: {text: "cut after a second", timeout: 4s, expect: timeout}
          - heal:
          - resume: full
          - expect:
              history: {count: 4, contains: ["cut after a second"]}
              delivery: {}
    """,
    "reset-peer": """
        steps:
          - connect:
          - chat: 1
          - fault: {toxic: reset_peer, timeout: 200ms}
          - chat: {text: "reset on the way back", timeout: 3s, expect: timeout}
          - resume: unreachable
          - heal:
          - resume: full
          - expect:
              history: {count: 4, contains: ["reset on the way back"]}
              delivery: {}
    """,
    "slicer": """
        steps:
          - connect:
          - fault: {toxic: slicer, average_size: 16, size_variation: 8, slice_delay: 1ms}
          - fault: {toxic: slicer, average_size: 8, stream: upstream}
          - chat: {messages: 3, timeout: 10s}
          - chat: {text: "remember that city is Lyon", timeout: 10s}
          - snapshot: sliced
          - heal:
          - expect:
              history: {count: 8, contains: ["remember that city is Lyon"]}
              delivery: {}
              context: {equals: sliced}
    """,
    # The reply to the second message is cut after 150 bytes, mid-stream.
    "limit-data": """
        steps:
          - connect:
          - chat: 1
          - fault: {toxic: limit_data, bytes: 150}
          - chat: {text: "what is 6 * 7", timeout: 3s, expect: timeout}
          - heal:
          - resume: full
          - chat: 1
          - expect:
              history: {count: 6, contains: ["what is 6 * 7"]}
              delivery: {}
    """,
    "change-ip-forwarded-for": """
        steps:
          - change_ip: {forwarded_for: 198.51.100.7}
          - connect:
          - chat: 1
          - drop: reset
          - resume: full
          - expect:
              resume: {outcome: full, notice: false}
          - drop: reset
          - change_ip: {forwarded_for: 203.0.113.9}
          - resume: full
          - expect:
              resume: {outcome: full, notice: true}
          - expect:
              history: {count: 2}
    """,
    "change-ip-source": """
        clients:
          - {name: laptop, route: direct}
        steps:
          - connect:
          - chat: 1
          - drop: close
          - change_ip: {source: 127.0.0.7}
          - resume: full
          - expect:
              resume: {outcome: full, notice: true}
              history: {count: 2}
    """,
    "virtual-ten-minutes": """
        clock: virtual
        steps:
          - connect:
          - chat: 1
          - drop: close
          - wait: 10m
          - resume: {expect: rejected, reason: session_expired}
          - reconnect_fresh:
          - expect:
              history: {count: 0}
    """,
    "parallel-20": """
        steps:
          - connect:
          - parallel:
              clients: 20
              user_prefix: crowd
              steps:
                - connect:
                - chat: 2
                - drop: reset
                - resume: full
                - expect:
                    history: {count: 4}
                    delivery: {}
          - expect:
              metrics:
                - {name: ws_sessions_opened_total, value: "== 21"}
              latency:
                - {operation: resume, max: "< 2s"}
          - chat: 1
          - expect:
              history: {count: 2}
    """,
    "repeat": """
        steps:
          - connect:
          - repeat:
              times: 5
              steps:
                - chat: 1
                - drop: close
                - wait: 3s
                - resume: full
          - expect:
              history: {count: 10}
              delivery: {}
    """,
    "send": """
        steps:
          - connect:
          - send: {frame: "{not json", expect_error: malformed_json}
          - chat: 1
          - send: {frame: "hello", binary: true, expect_close: 1003}
          - resume: full
          - chat: 1
          - expect:
              history: {count: 4}
              delivery: {}
    """,
    "metrics": """
        steps:
          - connect:
          - chat: 2
          - snapshot: a
          - chat: 3
          - snapshot: b
          - expect:
              metrics:
                - {name: ws_connections, value: "== 1"}
                - {name: ws_sessions_opened_total, value: "== 1"}
                - {name: ws_messages_received_total, growth: "> 0%", between: [a, b]}
                - {name: process_resident_memory_bytes, growth: "< 50%", between: [a, b]}
    """,
}


def scenario_text(name: str, body: str) -> str:
    """The YAML file of scenario ``name``: the name, a default clock and timeout, the body."""
    body = textwrap.dedent(body).strip("\n")
    header = f"name: {name}\ntimeout: 30s\n"
    if "clock:" not in body:
        header += "clock: virtual\n"
    return header + body + "\n"


def write_scenario(folder: Path, name: str, body: str) -> Path:
    """Write scenario ``name`` into ``folder``; return its path."""
    path = folder / f"{name}.yaml"
    path.write_text(scenario_text(name, body), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScenarioResult]:
    """Run every scenario of ``SCENARIOS`` in one suite; map each name to its result."""
    folder = tmp_path_factory.mktemp("scenarios")
    loaded = [
        (path, load(path)) for path in (write_scenario(folder, *kv) for kv in SCENARIOS.items())
    ]
    return {result.name: result for result in asyncio.run(run_all(loaded, jobs=4)).scenarios}


async def run_all(loaded: list[tuple[Path, Scenario]], jobs: int) -> RunResult:
    """Run the scenarios through the engine, ``jobs`` at a time."""
    async with Engine(RunOptions(jobs=jobs)) as engine:
        return await engine.run(loaded)


def passed(result: ScenarioResult) -> ScenarioResult:
    """``result``, after asserting the scenario passed (the message says where it did not)."""
    failure = result.first_failure
    where = f"step {failure.path} {failure.kind}: {failure.message}" if failure else result.error
    assert "passed" == result.status, where
    return result


def step(result: ScenarioResult, path: str) -> StepResult:
    """The recorded step at ``path`` (``"4"``, or ``"2.3.1"`` inside repeat or parallel)."""
    return next(s for s in result.steps if s.path == path)


def toxics(result: ScenarioResult) -> list[FaultAction]:
    """Every toxic the scenario added, as the history recorded it."""
    return [
        op.body
        for op in result.history
        if op.phase == "invoke"
        and isinstance(op.body, FaultAction)
        and op.body.action == "add_toxic"
    ]


# --- drops -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
def test_drop_of_the_client_connection_resumes_in_full(
    results: dict[str, ScenarioResult], how: str
) -> None:
    """A clean close or a TCP reset by the client resumes in full with history and context."""
    result = passed(results[f"drop-{how}"])
    disconnects = [op.body.how for op in result.history if isinstance(op.body, Disconnect)]
    assert [how] == disconnects
    assert step(result, "6").message.startswith("full after a 5.")


def test_half_open_is_found_by_the_server_heartbeat(results: dict[str, ScenarioResult]) -> None:
    """Blackholed data goes unnoticed until virtual time passes the heartbeat timeout; then the
    session resumes in full and the message sent into the void is answered."""
    result = passed(results["half-open"])
    assert "ws_heartbeat_timeouts_total = 0" == step(result, "5").message
    assert "ws_heartbeat_timeouts_total = 1" == step(result, "7").message
    assert "45 s of virtual time" == step(result, "6").message


def test_drop_mid_reply_replays_the_rest(results: dict[str, ScenarioResult]) -> None:
    """A reset while a reply streams cuts it: part arrives before the drop, the resume replays
    the rest (the server counts replayed messages), and every position arrives once, in order."""
    result = passed(results["drop-mid-reply"])
    before: list[int] = []
    after: list[int] = []
    phase: list[int] | None = None
    for op in result.history:
        body = op.body
        if isinstance(body, SendMessage) and body.text.startswith("what do"):
            phase = before
        elif isinstance(body, Disconnect) and phase is before:
            phase = after
        elif isinstance(body, Delivered) and phase is not None:
            assert isinstance(body.position, int)
            phase.append(body.position)
    assert before, "nothing of the reply arrived before the drop"
    assert before[-1] + 1 == after[0]
    assert step(result, "7").message.startswith("ws_replayed_messages_total = ")


def test_proxy_down_for_a_duration_gives_a_gap_of_that_duration(
    results: dict[str, ScenarioResult],
) -> None:
    """A 15 s network outage ends by itself and the resume reports a gap of about 15 s."""
    result = passed(results["proxy-down-for-15s"])
    assert "proxy_down for 15 s" == step(result, "3").message
    assert step(result, "4").message.startswith("full after a 15.")
    actions = [
        op.body.action
        for op in result.history
        if op.phase == "invoke" and isinstance(op.body, FaultAction)
    ]
    assert ["create", "down", "up"] == actions[:3]


def test_proxy_down_lasts_until_heal(results: dict[str, ScenarioResult]) -> None:
    """Without a duration the network stays down (a resume is refused) until ``heal``."""
    result = passed(results["proxy-down-until-heal"])
    assert step(result, "4").message.startswith("unreachable, as expected")
    assert "1 message(s) queued while disconnected" == step(result, "5").message


def test_server_restart_keeps_the_session(results: dict[str, ScenarioResult]) -> None:
    """A SIGKILL and restart of the server loses nothing: history, context and delivery hold, and
    the fresh process has opened no session of its own."""
    result = passed(results["server-restart"])
    assert "server_restart" == step(result, "5").message


def test_server_restart_keeps_the_virtual_time(results: dict[str, ScenarioResult]) -> None:
    """Across restarts the server's virtual clock does not go back: a 2 min gap still resumes
    degraded and a 10 min one still expires."""
    result = passed(results["server-restart-after-gaps"])
    assert 720.0 == result.virtual_seconds


def test_a_restart_while_attached_after_a_wait_resumes_in_full(
    results: dict[str, ScenarioResult],
) -> None:
    """The restarted process restores an attached session as detached at the moment it starts,
    on the clock the old process had reached: the waits before the restart are not gap."""
    passed(results["server-restart-while-attached-after-a-wait"])


# --- faults ----------------------------------------------------------------------------------


def test_latency_with_jitter_slows_every_chat(results: dict[str, ScenarioResult]) -> None:
    """With 300 ms ± 50 ms of latency each chat takes more than 0.2 s, and all arrive."""
    result = passed(results["latency"])
    assert [{"latency": 300, "jitter": 50}] == [t.attributes for t in toxics(result)]
    assert min(durations(result.history, AwaitReply)) > 0.25


def test_bandwidth_limit_slows_a_large_answer(results: dict[str, ScenarioResult]) -> None:
    """At 1 KB/s the history fetched under the limit takes over 0.2 s; chat still works."""
    result = passed(results["bandwidth"])
    assert [{"rate": 1}] == [t.attributes for t in toxics(result)]


def test_slow_close_delays_the_close(results: dict[str, ScenarioResult]) -> None:
    """A clean close through an 800 ms slow_close takes that long, and the session resumes."""
    result = passed(results["slow-close"])
    assert step(result, "4").seconds >= 0.7


def test_timeout_toxic_cuts_the_connection(results: dict[str, ScenarioResult]) -> None:
    """A 1 s timeout toxic closes the connection after about a second, well before the chat's
    own timeout, and the message is answered after the resume."""
    result = passed(results["timeout-toxic"])
    chat = step(result, "4")
    assert "ConnectionLostError" in chat.message
    assert 0.8 <= chat.seconds < 3.0


def test_reset_peer_resets_connections_until_healed(results: dict[str, ScenarioResult]) -> None:
    """reset_peer resets the connection carrying the reply and any new one, until ``heal``."""
    result = passed(results["reset-peer"])
    assert "ConnectionLostError" in step(result, "4").message
    assert step(result, "5").message.startswith("unreachable, as expected")


def test_slicer_still_delivers_everything(results: dict[str, ScenarioResult]) -> None:
    """Frames cut into small packets both ways still arrive whole, each once, in order."""
    result = passed(results["slicer"])
    assert [("slicer", "downstream"), ("slicer", "upstream")] == [
        (t.toxic_type, t.stream) for t in toxics(result)
    ]


def test_limit_data_cuts_the_reply_and_the_client_resumes(
    results: dict[str, ScenarioResult],
) -> None:
    """After 150 bytes the connection is cut mid-reply; the resume replays the rest, once."""
    result = passed(results["limit-data"])
    assert "ConnectionLostError" in step(result, "4").message
    assert step(result, "6").message.startswith("full")


# --- addresses -------------------------------------------------------------------------------


def test_change_ip_through_the_proxy_gives_a_notice(results: dict[str, ScenarioResult]) -> None:
    """X-Forwarded-For through the (trusted) proxy: no notice for the same address, a notice
    once it changes."""
    passed(results["change-ip-forwarded-for"])


def test_change_ip_by_source_address_gives_a_notice(results: dict[str, ScenarioResult]) -> None:
    """A direct client that reconnects from 127.0.0.7 gets a security notice and its session."""
    result = passed(results["change-ip-source"])
    routes = [op.body for op in result.history if isinstance(op.body, RouteChanged)]
    assert [RouteChanged(source="127.0.0.7", forwarded_for=None)] == routes


# --- clocks, parallel, repeat, send, metrics -------------------------------------------------


def test_virtual_clock_makes_ten_minutes_cheap(results: dict[str, ScenarioResult]) -> None:
    """A 10 min gap on the virtual clock takes well under a few seconds and expires the session."""
    result = passed(results["virtual-ten-minutes"])
    assert ("virtual", 600.0) == (result.clock, result.virtual_seconds)
    assert result.seconds < 5.0


def test_parallel_clients_each_resume(results: dict[str, ScenarioResult]) -> None:
    """Twenty parallel clients each connect, chat, drop and resume with nothing lost."""
    result = passed(results["parallel-20"])
    resumes = [s for s in result.steps if s.kind == "resume"]
    expected = {f"2.crowd{i}.4" for i in range(1, 21)}
    assert (expected, {"passed"}) == ({s.path for s in resumes}, {s.status for s in resumes})
    assert 20 == len(durations(result.history, Resume))


def test_repeat_runs_its_steps_each_time(results: dict[str, ScenarioResult]) -> None:
    """Five cycles of chat, close and resume all resume in full and keep every message."""
    result = passed(results["repeat"])
    assert ["2.5.4"] == [s.path for s in result.steps if s.path.startswith("2.5.4")]
    assert 5 == len(durations(result.history, Resume))


def test_send_bad_frames_gets_errors_and_closes(results: dict[str, ScenarioResult]) -> None:
    """Malformed JSON is answered with ``malformed_json``; a binary frame closes with 1003."""
    result = passed(results["send"])
    assert "error malformed_json, close None" == step(result, "2").message
    assert "error binary_frame, close 1003" == step(result, "4").message


def test_expect_metrics_values_and_growth(results: dict[str, ScenarioResult]) -> None:
    """Metric values and growth between snapshots are read from the server and checked."""
    result = passed(results["metrics"])
    verdicts = step(result, "6").verdicts
    assert ["ws_connections = 1", "ws_sessions_opened_total = 1"] == [
        v.message for v in verdicts[:2]
    ]
    assert verdicts[2].evidence["last"] > verdicts[2].evidence["first"]


# --- the command line ------------------------------------------------------------------------

FAILING = """
    steps:
      - connect:
      - chat: 2
      - expect:
          history: {count: 99}
      - chat: 1
"""


def test_cli_exit_code_1_when_a_scenario_fails_and_reports_are_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One failing scenario makes ``harness run`` exit 1 and results.json, report.md and
    junit.xml say which step failed, with what was expected and seen."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    write_scenario(folder, "fine", SCENARIOS["drop-close"])
    write_scenario(folder, "wrong-count", FAILING)
    reports = tmp_path / "reports"
    code = cli.main(["run", str(folder), "--report-dir", str(reports), "--jobs", "2"])
    out = capsys.readouterr().out
    assert exit_codes.SCENARIO_FAILED == code, out
    latest = reports / "latest"
    assert {"results.json", "report.md", "junit.xml", "report.html"} == {
        p.name for p in latest.iterdir()
    }
    record = json.loads((latest / "results.json").read_text())
    statuses = {s["name"]: s["status"] for s in record["scenarios"]}
    assert {"fine": "passed", "wrong-count": "failed"} == statuses
    wrong = next(s for s in record["scenarios"] if s["name"] == "wrong-count")
    failed_step = next(s for s in wrong["steps"] if s["status"] == "failed")
    assert ("3", "expect") == (failed_step["path"], failed_step["kind"])
    assert "the server holds 4 turns, expected 99" == failed_step["seen"]
    assert "4" not in [s["path"] for s in wrong["steps"]]
    assert "FAILED wrong-count: step 3 (expect)" in out
    suite = ET.parse(latest / "junit.xml").getroot()
    failures = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert ["wrong-count"] == failures
    assert "wrong-count" in (latest / "report.md").read_text()


def test_cli_exit_code_2_for_an_invalid_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid scenario file exits 2 before anything runs, naming file, line and column."""
    bad = tmp_path / "broken.yaml"
    bad.write_text(
        "name: typo\nsteps:\n  - connect:\n  - drop: {how: reset}\n  - resume:\n      expct: full\n"
    )
    code = cli.main(["run", str(bad), "--report-dir", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert exit_codes.USAGE_ERROR == code
    assert f"{bad}:6:7: steps[2].expct: unknown field `expct` (did you mean 'expect'?)" in err
    assert not (tmp_path / "reports").exists()


def test_cli_real_clock_waits_real_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On the real clock a 1 s wait takes at least 1 s of wall time and the report says real."""
    body = """
        clock: real
        steps:
          - connect:
          - chat: 1
          - drop: close
          - wait: 1s
          - resume: full
    """
    path = write_scenario(tmp_path, "real-clock", body)
    code = cli.main(["run", str(path), "--report-dir", str(tmp_path / "reports")])
    assert exit_codes.OK == code, capsys.readouterr().out
    record = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    (scenario,) = record["scenarios"]
    assert ("real", 0.0) == (scenario["clock"], scenario["virtual_seconds"])
    wait = next(s for s in scenario["steps"] if s["kind"] == "wait")
    assert "1 s of real time" == wait["message"]
    assert wait["seconds"] >= 1.0
    assert "real clock" in scenario["target"]
