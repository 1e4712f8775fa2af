"""``harness stability`` against the embedded reference server through a real Toxiproxy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import cli, exit_codes

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy]

SEED = Path(__file__).parents[2] / "scenarios" / "seed"


def test_a_stable_passing_suite_exits_0_with_every_run_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(SEED / "01_basic_history.yaml", tmp_path)
    shutil.copy(SEED / "07_harness_catches_faults.yaml", tmp_path)
    reports = tmp_path / "reports"
    code = cli.main(
        ["stability", str(tmp_path), "--runs", "3", "--seed", "7", "--report-dir", str(reports)]
    )
    out = capsys.readouterr()
    assert exit_codes.OK == code, out.out + out.err
    assert "| basic reconnection preserves conversation history | 3 | 0 | 0 | 0 | stable |" in (
        out.out
    )
    assert "Every scenario passed in every one of the 3 runs." in out.out
    assert "run 3/3: 2 passed" in out.err
    assert all((reports / f"run-{i}" / "results.json").is_file() for i in (1, 2, 3))


def test_a_scenario_failing_in_every_run_is_stable_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The planted duplicate is caught every time: the same verdict, but not a green suite."""
    text = (SEED / "07_harness_catches_faults.yaml").read_text(encoding="utf-8")
    (tmp_path / "dup.yaml").write_text(text.replace("      must_fail: true\n", ""), "utf-8")
    code = cli.main(["stability", str(tmp_path / "dup.yaml"), "--runs", "2"])
    out = capsys.readouterr().out
    assert exit_codes.SCENARIO_FAILED == code
    assert "| the harness catches a server that replays twice | 0 | 2 | 0 | 0 | stable |" in out
    assert "same verdict in every run (not all passed)" in out


def test_runs_below_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_codes.USAGE_ERROR == cli.main(["stability", str(SEED), "--runs", "0"])
    assert "must be at least 1" in capsys.readouterr().err
