"""`harness run scenarios/socketio --driver socketio`: the real Socket.IO host through the real
Toxiproxy, every scenario ending the way it is declared.

A scenario tagged `finding` is a strict expected failure: it passes only because each of its
`must_fail` checks caught the behaviour it names, and the evidence below is what each caught.
One tagged `not-offered` is skipped for the capability Socket.IO lacks. Every other passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import cli, exit_codes
from harness.scenario import load

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy]

SUITE = Path(__file__).resolve().parents[2] / "scenarios" / "socketio"

EVIDENCE: dict[str, list[str]] = {
    "finding_restart_loses_sessions.yaml": ["last resume was rejected"],
    "finding_no_event_no_recovery.yaml": ["last resume was rejected"],
    "finding_half_open_message_lost.yaml": ["('sent into the void') has no complete reply"],
    "finding_takeover_steals_replies.yaml": [
        "('is anyone there') has no complete reply",
        "connection closed with None",
    ],
    "finding_replayed_session_id.yaml": [
        "last resume was full",
        "('are you still there') has no complete reply",
        "1 context values changed, first rooms[0]",
    ],
    "finding_refused_recovery_leaks.yaml": ["messages arrived on stream"],
}
"""What each finding's `must_fail` checks caught, in step order (a substring of each)."""

NOT_OFFERED: dict[str, str] = {
    "history_not_stored.yaml": "needs driver capability 'history'",
    "ip_change_notice.yaml": "needs driver capability 'notices'",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """One run of the whole suite; its exit code and report folder."""
    reports = tmp_path_factory.mktemp("reports")
    code = cli.main(["run", str(SUITE), "--driver", "socketio", "--report-dir", str(reports)])
    return code, reports / "latest"


def _scenarios(latest: Path) -> dict[str, dict[str, Any]]:
    record = json.loads((latest / "results.json").read_text())
    return {Path(s["file"]).name: s for s in record["scenarios"]}


def test_the_suite_passes_with_its_findings_and_skips(run: tuple[int, Path]) -> None:
    """Exit 0, every file ran, and the report says so."""
    code, latest = run
    assert exit_codes.OK == code, (latest / "report.md").read_text()
    assert sorted(p.name for p in SUITE.glob("*.yaml")) == sorted(_scenarios(latest))
    assert "**Result:** ✅ ALL PASSED" in (latest / "report.md").read_text()


def test_each_finding_fails_its_checks_the_way_it_declares(run: tuple[int, Path]) -> None:
    """Every `finding` scenario passed only through its must-fail checks, with that evidence."""
    _, latest = run
    scenarios = _scenarios(latest)
    findings = sorted(p.name for p in SUITE.glob("*.yaml") if "finding" in load(p).tags)
    assert sorted(EVIDENCE) == findings
    for name, wanted in EVIDENCE.items():
        scenario = scenarios[name]
        assert "passed" == scenario["status"], (name, scenario.get("error"))
        caught = [
            step["message"]
            for step in scenario["steps"]
            if any(v["check"] == "must fail" and v["passed"] for v in step["verdicts"])
        ]
        assert len(wanted) == len(caught), (name, caught)
        for expected, message in zip(wanted, caught, strict=True):
            assert message.startswith("caught, as it must be: "), (name, message)
            assert expected in message, (name, message)


def test_what_socketio_does_not_offer_is_skipped_with_its_reason(run: tuple[int, Path]) -> None:
    """History and notices are missing capabilities: skipped, never passed."""
    _, latest = run
    scenarios = _scenarios(latest)
    for name, reason in NOT_OFFERED.items():
        assert ("skipped", True) == (scenarios[name]["status"], reason in scenarios[name]["error"])
    others = set(scenarios) - set(EVIDENCE) - set(NOT_OFFERED)
    assert {"passed"} == {scenarios[n]["status"] for n in others}


def test_harness_check_judges_the_saved_run_the_same(
    run: tuple[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Re-judging the stored histories (opaque positions included) changes no verdict."""
    _, latest = run
    capsys.readouterr()
    assert exit_codes.OK == cli.main(["check", str(latest / "results.json")])
    assert capsys.readouterr().out.rstrip().endswith(", 0 differ")
