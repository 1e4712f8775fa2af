"""The main job end to end: real Toxiproxy, the reference server as a child process, a client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import exit_codes
from harness.selfcheck import selfcheck


@pytest.mark.slow
@pytest.mark.toxiproxy
@pytest.mark.asyncio
async def test_selfcheck_passes_through_the_engine_and_writes_its_reports(tmp_path: Path) -> None:
    """`harness selfcheck` runs its built-in scenario through the engine, passes every check
    against the reference server, and writes the same reports as `harness run`."""
    code = await selfcheck(tmp_path)
    report = (tmp_path / "latest" / "report.md").read_text()
    assert exit_codes.OK == code, report
    assert "**Result:** ✅ ALL PASSED" in report
    record = json.loads((tmp_path / "latest" / "results.json").read_text())
    (scenario,) = record["scenarios"]
    kinds = [s["kind"] for s in scenario["steps"]]
    assert {"drop", "resume", "expect", "wait"} <= set(kinds)
    assert 740.0 == scenario["virtual_seconds"]
