"""The CI recipes of docs/ci.md are real files, valid by actionlint, and do what the page says.

docs/ci/*.yml are GitHub Actions workflows nobody runs here (there is no GitHub runner), so
they are checked instead: actionlint (built by scripts/setup into .tools/bin) validates each
one, docs/ci.md shows each exactly as the file holds it, and the workflows that run the suite
keep report.html as an artifact and put report.md in the job summary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "docs" / "ci").glob("*.yml"))
INSTALL = "go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12 (scripts/setup does it)"


def actionlint() -> str | None:
    local = ROOT / ".tools" / "bin" / "actionlint"
    return str(local) if os.access(local, os.X_OK) else shutil.which("actionlint")


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_there_are_recipes() -> None:
    """The main workflow, the comparison, the fault matrix, shards, herds, staging and the
    Toxiproxy container."""
    assert {
        "compare.yml",
        "continuity.yml",
        "herds.yml",
        "matrix.yml",
        "shards.yml",
        "staging.yml",
        "toxiproxy-container.yml",
    } == {p.name for p in RECIPES}


@pytest.mark.timeout(30)
def test_every_recipe_passes_actionlint() -> None:
    """actionlint finds nothing in docs/ci/*.yml (syntax, expressions, action inputs)."""
    binary = actionlint()
    if binary is None:
        pytest.skip(f"actionlint not found: install it with {INSTALL}")
    found = subprocess.run(
        [binary, "-no-color", *map(str, RECIPES)],
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )
    assert (0, "") == (found.returncode, found.stdout + found.stderr)


def test_docs_ci_shows_each_recipe_exactly() -> None:
    """Each yaml block of docs/ci.md headed `# docs/ci/NAME.yml` is that file, byte for byte,
    and every file is shown."""
    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    shown = {
        match[1]: match[0]
        for match in re.findall(r"```yaml\n(# docs/ci/([\w.-]+\.yml).*?\n)```", text, re.S)
    }
    assert sorted(p.name for p in RECIPES) == sorted(shown)
    for path in RECIPES:
        assert path.read_text(encoding="utf-8") == shown[path.name], path.name


@pytest.mark.parametrize(
    "name",
    ["continuity.yml", "herds.yml", "shards.yml", "staging.yml", "toxiproxy-container.yml"],
)
def test_a_workflow_that_runs_the_suite_keeps_report_html_and_writes_the_summary(
    name: str,
) -> None:
    """Its artifact holds report.html (reports/latest/ or the file), and report.md goes to
    $GITHUB_STEP_SUMMARY."""
    workflow = yaml.safe_load((ROOT / "docs" / "ci" / name).read_text(encoding="utf-8"))
    uploads = [
        str(s["with"]["path"])
        for s in steps(workflow)
        if str(s.get("uses", "")).startswith("actions/upload-artifact@")
    ]
    assert any("reports/latest/" in p or "report.html" in p for p in uploads), uploads
    runs = [str(s.get("run", "")) for s in steps(workflow)]
    assert any("report.md" in r and '>> "$GITHUB_STEP_SUMMARY"' in r for r in runs)


def test_the_comparison_workflow_comments_summarises_and_keeps_the_page() -> None:
    """compare.yml runs `harness report --compare` to markdown and HTML, puts the markdown in
    the summary and a pull-request comment, and keeps the HTML."""
    workflow = yaml.safe_load((ROOT / "docs" / "ci" / "compare.yml").read_text(encoding="utf-8"))
    runs = "\n".join(str(s.get("run", "")) for s in steps(workflow))
    assert "harness report --compare" in runs
    assert "--format html --output compare.html" in runs
    assert 'cat compare.md >> "$GITHUB_STEP_SUMMARY"' in runs
    assert "gh pr comment" in runs
    uploads = [
        str(s["with"]["path"]) for s in steps(workflow) if "upload-artifact" in str(s.get("uses"))
    ]
    assert any("compare.html" in p for p in uploads)


def test_the_matrix_workflow_summarises_and_keeps_the_matrix_page() -> None:
    """matrix.yml runs `harness matrix` into reports/, puts matrix.md in the summary even when
    a fault survived, and keeps latest-matrix/ (matrix.html and the clean run's reports)."""
    workflow = yaml.safe_load((ROOT / "docs" / "ci" / "matrix.yml").read_text(encoding="utf-8"))
    runs = [str(s.get("run", "")) for s in steps(workflow)]
    assert any("harness matrix" in r and "--report-dir reports" in r for r in runs)
    summary = next(s for s in steps(workflow) if "GITHUB_STEP_SUMMARY" in str(s.get("run", "")))
    assert "always()" == summary.get("if")
    assert 'cat reports/latest-matrix/matrix.md >> "$GITHUB_STEP_SUMMARY"' in summary["run"]
    uploads = [
        s for s in steps(workflow) if str(s.get("uses", "")).startswith("actions/upload-artifact@")
    ]
    assert ["reports/latest-matrix/"] == [u["with"]["path"] for u in uploads]
    assert all("always()" == u.get("if") for u in uploads)
