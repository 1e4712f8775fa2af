"""Report writers: results.json (the record); report.md, junit.xml and report.html (made from
it); for a fault matrix, matrix.json and the matrix.md and matrix.html made from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec

from harness import matrix_results
from harness.matrix_results import MatrixResult
from harness.report import html, junit, markdown, matrix_markdown
from harness.results import RunResult, read, write


def write_run(record: RunResult, folder: Path) -> None:
    """A run's four files, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write(record, folder / "results.json")
    (folder / "report.md").write_text(markdown.render(record), encoding="utf-8")
    (folder / "junit.xml").write_text(junit.render(record), encoding="utf-8")
    (folder / "report.html").write_text(html.render(record), encoding="utf-8")


def write_all(record: RunResult, report_dir: Path, stamp: str) -> Path:
    """Write the four files to ``report_dir/<stamp>/``; mirror them in ``report_dir/latest/``."""
    folder = report_dir / stamp
    write_run(record, folder)
    _mirror(folder, report_dir / "latest")
    return folder


def write_matrix(
    record: MatrixResult, clean: RunResult | None, report_dir: Path, stamp: str
) -> Path:
    """A fault matrix's files in ``report_dir/<stamp>-matrix/``, mirrored in
    ``report_dir/latest-matrix/``: ``matrix.json``, ``matrix.md``, ``matrix.html``, and the
    clean run's four files (its record names the matrix, so its report.html links the matrix
    page, and the matrix page links it)."""
    folder = report_dir / f"{stamp}-matrix"
    folder.mkdir(parents=True, exist_ok=True)
    if clean is not None:
        if record.clean_run != "results.json":
            record = msgspec.structs.replace(record, clean_run="results.json")
        write_run(matrix_results.link_clean_run(clean, record), folder)
    matrix_results.write(record, folder / "matrix.json")
    (folder / "matrix.md").write_text(matrix_markdown.render(record), encoding="utf-8")
    (folder / "matrix.html").write_text(html.render_matrix(record), encoding="utf-8")
    _mirror(folder, report_dir / "latest-matrix")
    return folder


def _mirror(folder: Path, latest: Path) -> None:
    """A plain copy, not a symbolic link, so CI artifact uploaders copy it as is."""
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(folder, latest)


__all__ = ["RunResult", "read", "write", "write_all", "write_matrix", "write_run"]
