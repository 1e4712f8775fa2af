"""Report writers: results.json (the record); report.md, junit.xml and report.html (made from
it)."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.report import html, junit, markdown
from harness.results import RunResult, read, write


def write_all(record: RunResult, report_dir: Path, stamp: str) -> Path:
    """Write the four files to ``report_dir/<stamp>/``; mirror them in ``report_dir/latest/``."""
    folder = report_dir / stamp
    folder.mkdir(parents=True, exist_ok=True)
    write(record, folder / "results.json")
    (folder / "report.md").write_text(markdown.render(record), encoding="utf-8")
    (folder / "junit.xml").write_text(junit.render(record), encoding="utf-8")
    (folder / "report.html").write_text(html.render(record), encoding="utf-8")
    latest = report_dir / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(folder, latest)
    return folder


__all__ = ["RunResult", "read", "write", "write_all"]
