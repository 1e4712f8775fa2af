"""The README's main job: the seed suite against the embedded reference server, with reports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness import exit_codes
from harness.cli import main

SEED = Path(__file__).resolve().parents[2] / "scenarios" / "seed"


@pytest.mark.slow
@pytest.mark.toxiproxy
def test_seed_suite_passes_fast_and_writes_three_reports(tmp_path: Path) -> None:
    """All eight seed scenarios pass, well under a minute, though they wait 12+ virtual minutes."""
    started = time.perf_counter()
    code = main(["run", str(SEED), "--report-dir", str(tmp_path)])
    wall = time.perf_counter() - started
    latest = tmp_path / "latest"
    results = json.loads((latest / "results.json").read_text())
    assert exit_codes.OK == code, (latest / "report.md").read_text()
    assert ["passed"] * 8 == [s["status"] for s in results["scenarios"]]
    virtual = sum(s["virtual_seconds"] for s in results["scenarios"])
    assert virtual > 12 * 60
    assert wall < 60
    assert "**Result:** ✅ ALL PASSED" in (latest / "report.md").read_text()
    assert 'tests="8"' in (latest / "junit.xml").read_text()


@pytest.mark.slow
@pytest.mark.toxiproxy
def test_a_planted_fault_fails_the_suite_and_the_report_names_it(tmp_path: Path) -> None:
    """The history scenario against a server that skips a replayed message exits 1 with evidence."""
    scenario = tmp_path / "broken.yaml"
    scenario.write_text(
        (SEED / "07_harness_catches_faults.yaml")
        .read_text()
        .replace("plant_fault: duplicate_replay", "plant_fault: skip_replay")
        .replace("      must_fail: true\n", "")
        .replace("the harness catches a server that replays twice", "replay must not skip")
    )
    code = main(["run", str(scenario), "--report-dir", str(tmp_path / "reports")])
    report = (tmp_path / "reports" / "latest" / "report.md").read_text()
    assert exit_codes.SCENARIO_FAILED == code
    assert "## Failures" in report
    assert "replay must not skip" in report
    assert "never arrived and the server did not declare it lost" in report
