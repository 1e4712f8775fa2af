"""`harness run examples/legacy_chat/scenarios --driver legacy_chat`: the example server, played
by the example plugin found by name, through the real Toxiproxy; every scenario ends the way it
is declared.

A scenario tagged `finding` is a strict expected failure: it passes only because each of its
`must_fail` checks caught what such a server loses, and the evidence below is what each caught.
Every other scenario passes. The plugin must be installed (`scripts/setup` does it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import cli, exit_codes
from harness.scenario import load

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy]

SUITE = Path(__file__).resolve().parents[2] / "examples" / "legacy_chat" / "scenarios"

EVIDENCE: dict[str, list[str]] = {
    "finding_message_in_flight_lost.yaml": [
        "('sent into the void') has no complete reply at this client (0 parts arrived)",
        "('sent into the void') is not in the server's history",
    ],
    "finding_reply_cut_by_reset.yaml": [
        "('slowly: tell me a long story about the sea') has no complete reply at this client",
    ],
    "finding_restart_loses_everything.yaml": [
        "last resume was rejected",
        "('my name is Ada') is not in the server's history",
        "context values changed, first memory.name",
    ],
}
"""What each finding's `must_fail` checks caught, in step order (a substring of each)."""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """One run of the whole example suite; its exit code and report folder."""
    reports = tmp_path_factory.mktemp("reports")
    code = cli.main(
        ["run", str(SUITE), "--driver", "legacy_chat", "--jobs", "2", "--report-dir", str(reports)]
    )
    return code, reports / "latest"


def _scenarios(latest: Path) -> dict[str, dict[str, Any]]:
    record = json.loads((latest / "results.json").read_text())
    return {Path(s["file"]).name: s for s in record["scenarios"]}


def test_the_suite_passes_with_its_findings(run: tuple[int, Path]) -> None:
    """Exit 0, every file ran with the plugin's driver, and everything not a finding passed."""
    code, latest = run
    assert exit_codes.OK == code, (latest / "report.md").read_text()
    scenarios = _scenarios(latest)
    assert sorted(p.name for p in SUITE.glob("*.yaml")) == sorted(scenarios)
    assert {"legacy_chat"} == {s["driver"] for s in scenarios.values()}
    assert {"passed"} == {s["status"] for s in scenarios.values()}


def test_each_finding_fails_its_checks_the_way_it_declares(run: tuple[int, Path]) -> None:
    """Every `finding` scenario passed only through its must-fail checks, with that evidence."""
    _, latest = run
    scenarios = _scenarios(latest)
    findings = sorted(p.name for p in SUITE.glob("*.yaml") if "finding" in load(p).tags)
    assert sorted(EVIDENCE) == findings
    for name, wanted in EVIDENCE.items():
        caught = [
            step["message"]
            for step in scenarios[name]["steps"]
            if any(v["check"] == "must fail" and v["passed"] for v in step["verdicts"])
        ]
        assert len(wanted) == len(caught), (name, caught)
        for expected, message in zip(wanted, caught, strict=True):
            assert message.startswith("caught, as it must be: "), (name, message)
            assert expected in message, (name, message)


def test_no_resume_is_full_and_a_lost_conversation_is_a_rejection(run: tuple[int, Path]) -> None:
    """Over the whole run, every resume the driver reported is `degraded` with `no_replay`,
    except the one after the restart, `rejected: not_recovered`; none is `full`."""
    _, latest = run
    outcomes: dict[str, set[tuple[str, str | None, tuple[str, ...]]]] = {}
    for name, scenario in _scenarios(latest).items():
        resumes = {
            op[1]
            for op in scenario["history"]
            if op[3] == "invoke" and op[5].get("type") == "resume"
        }
        outcomes[name] = {
            (op[5]["kind"], op[5].get("reason"), tuple(op[5].get("warnings", ())))
            for op in scenario["history"]
            if op[1] in resumes and op[3] == "ok"
        }
    restart = "finding_restart_loses_everything.yaml"
    assert {("rejected", "not_recovered", ())} == outcomes.pop(restart)
    assert {("degraded", None, ("no_replay",))} == set().union(*outcomes.values())


def test_harness_check_judges_the_saved_run_the_same(
    run: tuple[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Re-judging the stored histories changes no verdict."""
    _, latest = run
    capsys.readouterr()
    assert exit_codes.OK == cli.main(["check", str(latest / "results.json")])
    assert capsys.readouterr().out.rstrip().endswith(", 0 differ")
