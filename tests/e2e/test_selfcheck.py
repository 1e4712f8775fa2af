"""The main job end to end: real Toxiproxy, the reference server as a child process, a client."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import exit_codes
from harness.selfcheck import selfcheck


@pytest.mark.slow
@pytest.mark.toxiproxy
@pytest.mark.asyncio
async def test_selfcheck_passes_and_writes_its_report(tmp_path: Path) -> None:
    """`harness selfcheck` passes every check against the reference server and writes a report."""
    code = await selfcheck(tmp_path)
    report = (tmp_path / "latest" / "selfcheck.md").read_text()
    assert exit_codes.OK == code, report
    assert "**Result:** PASSED (5/5 checks)" in report
    assert "server killed and restarted: resume full | pass" in report
