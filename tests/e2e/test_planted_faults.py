"""The harness catches bugs: each fault planted in the reference server makes a scenario fail.

Each scenario carries a normal expectation (no ``must_fail``). With the fault planted it must
FAIL, at the step that states the broken rule and with evidence naming what went wrong; the same
scenario without the fault must pass, so the failure is the fault's doing and not the
scenario's. Scenarios run through a real Toxiproxy against the embedded reference server.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from harness.engine import Engine, RunOptions
from harness.history import Delivered, FaultAction
from harness.results import ScenarioResult
from harness.runner import StepResult
from harness.scenario import load

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy]

# Replies go into a blackhole, unacknowledged, so the resume must replay them: the first
# replayed position is the one after the last the client received before the blackhole.
REPLAY = """
    steps:
      - connect:
      - chat: 2
      - fault: {toxic: timeout, timeout: 0s, stream: downstream}
      - chat: {text: "answered into the void", timeout: 1s, expect: timeout}
      - heal:
      - resume: full
      - chat: 1
      - expect:
          delivery: {no_loss: true, no_duplicates: true, order: true}
          history: {count: 8}
"""

EXPIRY = """
    steps:
      - connect:
      - chat: 1
      - drop: close
      - wait: 10m
      - resume: {expect: rejected, reason: session_expired}
      - reconnect_fresh:
      - expect:
          history: {count: 0}
"""

IP_DENY = """
    server_args: ["--ip-policy", "deny"]
    steps:
      - change_ip: {forwarded_for: 198.51.100.7}
      - connect:
      - chat: 1
      - drop: reset
      - change_ip: {forwarded_for: 203.0.113.9}
      - resume: {expect: rejected, reason: ip_denied}
"""

IP_NOTICE = """
    steps:
      - change_ip: {forwarded_for: 198.51.100.7}
      - connect:
      - chat: 1
      - drop: reset
      - change_ip: {forwarded_for: 203.0.113.9}
      - resume: full
      - expect:
          resume: {outcome: full, notice: true}
"""

# The language cannot present an old token (see test_reusable_token_*): the driver is patched
# to present the token of the first connect at the second resume.
TOKEN_REUSE = """
    steps:
      - connect:
      - chat: 1
      - drop: close
      - resume: full
      - chat: 1
      - drop: close
      - resume: {token: previous, expect: rejected, reason: token_reused}
"""

# name -> (fault, body)
CASES: dict[str, tuple[str, str]] = {
    "skip-replay": ("skip_replay", REPLAY),
    "duplicate-replay": ("duplicate_replay", REPLAY),
    "never-expire": ("never_expire", EXPIRY),
    "ignore-ip-policy-deny": ("ignore_ip_policy", IP_DENY),
    "ignore-ip-policy-notice": ("ignore_ip_policy", IP_NOTICE),
}


def write_scenario(folder: Path, name: str, body: str, fault: str | None) -> Path:
    """Write scenario ``name`` (virtual clock) with ``fault`` planted, or none; return its path."""
    text = f"name: {name}\nclock: virtual\ntimeout: 30s\n"
    if fault is not None:
        text += f"plant_fault: {fault}\n"
    path = folder / f"{name}.yaml"
    path.write_text(text + textwrap.dedent(body).strip("\n") + "\n", encoding="utf-8")
    return path


def run(paths: list[Path]) -> dict[str, ScenarioResult]:
    """Run the scenario files in one suite; map each scenario's name to its result."""
    loaded = [(path, load(path)) for path in paths]

    async def all_of_them() -> list[ScenarioResult]:
        async with Engine(RunOptions(jobs=4)) as engine:
            return (await engine.run(loaded)).scenarios

    return {result.name: result for result in asyncio.run(all_of_them())}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScenarioResult]:
    """Every case twice: ``<name>`` with its fault planted, ``<name>-clean`` without."""
    folder = tmp_path_factory.mktemp("planted")
    paths = [write_scenario(folder, name, body, fault) for name, (fault, body) in CASES.items()]
    paths += [
        write_scenario(folder, f"{name}-clean", body, None) for name, (_, body) in CASES.items()
    ]
    return run(paths)


def failed_at(result: ScenarioResult, path: str, kind: str) -> StepResult:
    """The step that failed, after asserting the scenario failed there (not errored elsewhere)."""
    failure = result.first_failure
    assert failure is not None, f"{result.status}: {result.error} (the fault went unnoticed)"
    assert ("failed", path, kind, "failed") == (
        result.status,
        failure.path,
        failure.kind,
        failure.status,
    ), failure.message
    return failure


def first_replayed_position(result: ScenarioResult) -> int:
    """The position after the last one delivered before the blackhole was added."""
    last = 0
    for op in result.history:
        if isinstance(op.body, FaultAction) and op.body.action == "add_toxic":
            return last + 1
        if isinstance(op.body, Delivered) and isinstance(op.body.position, int):
            last = max(last, op.body.position)
    raise AssertionError("no toxic was added")


@pytest.mark.parametrize("name", sorted(CASES))
def test_without_the_fault_the_scenario_passes(
    results: dict[str, ScenarioResult], name: str
) -> None:
    """Each scenario passes against the correct server, so its failure below is the fault's."""
    result = results[f"{name}-clean"]
    failure = result.first_failure
    assert "passed" == result.status, failure.message if failure else result.error


def test_skip_replay_is_caught_naming_the_lost_position(
    results: dict[str, ScenarioResult],
) -> None:
    """A server that skips the first replayed message fails the delivery check, which names that
    position as lost."""
    result = results["skip-replay"]
    failure = failed_at(result, "8", "expect")
    lost = first_replayed_position(result)
    assert f"position {lost} never arrived and the server did not declare it lost" == failure.seen
    assert lost in failure.evidence["lost"] or (lost, lost) in failure.evidence["undeclared_gaps"]
    assert "delivery to hold" == failure.expected


def test_duplicate_replay_is_caught_naming_the_duplicated_position(
    results: dict[str, ScenarioResult],
) -> None:
    """A server that replays one message twice fails the delivery check, which names the
    duplicated position."""
    result = results["duplicate-replay"]
    failure = failed_at(result, "8", "expect")
    doubled = first_replayed_position(result)
    assert f"position {doubled} was delivered twice (1 duplicated in all)" == failure.seen
    assert [doubled] == failure.evidence["duplicated"]


def test_never_expire_is_caught_by_the_expiry_step(results: dict[str, ScenarioResult]) -> None:
    """A server that never expires sessions resumes after a 10 min gap; the step expecting the
    rejection ``session_expired`` fails and says what it saw instead."""
    failure = failed_at(results["never-expire"], "5", "resume")
    assert ("resume rejected (session_expired)", "full") == (failure.expected, failure.seen)


def test_ignore_ip_policy_is_caught_by_the_deny_step(results: dict[str, ScenarioResult]) -> None:
    """With ``--ip-policy deny``, a server that ignores its policy lets a resume from another
    address through; the step expecting ``ip_denied`` fails."""
    failure = failed_at(results["ignore-ip-policy-deny"], "6", "resume")
    assert "resume rejected (ip_denied)" == failure.expected
    assert failure.seen.startswith("full")


def test_ignore_ip_policy_is_caught_by_the_missing_notice(
    results: dict[str, ScenarioResult],
) -> None:
    """With the default policy (allow), a server that ignores the address change sends no
    security notice; the expectation of one fails."""
    failure = failed_at(results["ignore-ip-policy-notice"], "7", "expect")
    assert ("notice=True", "0 notices since the session began") == (
        failure.expected,
        failure.seen,
    )


# --- reusable_token: the language cannot present an old token, so the driver does -----------


def test_reusable_token_is_caught_when_an_old_token_is_presented(tmp_path: Path) -> None:
    """A server that accepts any token it ever issued resumes with a rotated-out token, so the
    step expecting ``token_reused`` fails, where the correct server rejects the token."""
    results = run(
        [
            write_scenario(tmp_path, "token-reuse", TOKEN_REUSE, "reusable_token"),
            write_scenario(tmp_path, "token-reuse-clean", TOKEN_REUSE, None),
        ]
    )
    clean = results["token-reuse-clean"]
    assert "passed" == clean.status, clean.first_failure
    assert "rejected (token_reused)" == clean.steps[-1].message
    failure = failed_at(results["token-reuse"], "7", "resume")
    assert "resume rejected (token_reused)" == failure.expected
    assert failure.seen.startswith("full")
