"""The report files of real runs, without a browser: made from results.json alone, small."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import exit_codes
from harness.cli import main
from tests.browser.conftest import Run

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy]


def test_the_seed_runs_report_is_under_a_megabyte_and_made_from_results_json_alone(
    runs: dict[str, Run], tmp_path: Path
) -> None:
    """The page the run wrote is the page `harness report results.json --format html` makes
    again from the saved results, and it is under 1 MB."""
    for run in runs.values():
        again = tmp_path / "again.html"
        args = ["report", str(run.folder / "results.json"), "--format", "html", "--output"]
        assert exit_codes.OK == main([*args, str(again)])
        assert run.html.read_bytes() == again.read_bytes()
    assert runs["passing"].html.stat().st_size < 1_000_000
