"""The fault matrix's record (matrix.json), matrix.md and matrix.html, on a hand-made matrix.

tests/golden/matrix.md is what the markdown writer makes of the matrix below; after an intended
change, regenerate it with ``UPDATE_GOLDEN=1 pytest tests/unit/harness/test_matrix_record.py``
and review the diff. The browser tests (tests/browser/test_matrix_in_chromium.py) open the page
of a real matrix.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from harness import exit_codes, matrix_results, results
from harness.checkers import Verdict
from harness.cli import main
from harness.matrix import Matrix
from harness.matrix_results import MatrixResult
from harness.report import html, matrix_markdown, write_matrix
from harness.results import RunResult, ScenarioResult, StepResult
from tests.unit.harness.test_html_report import Page
from tests.unit.harness.test_reports import check_golden

SCENARIOS = {
    "history survives a reset": "scenarios/golden/01_history.yaml",
    "a replay is exact": "scenarios/golden/02_replay.yaml",
}


def _result(name: str, status: str, **fields: object) -> ScenarioResult:
    return ScenarioResult(
        name=name,
        file=SCENARIOS.get(name, "scenarios/golden/03_flaky.yaml"),
        status=status,  # type: ignore[arg-type]
        seconds=0.5,
        **fields,  # type: ignore[arg-type]
    )


def _passed(name: str) -> ScenarioResult:
    return _result(
        name,
        "passed",
        steps=[
            StepResult(
                path="1",
                kind="expect",
                status="passed",
                verdicts=[Verdict(check="delivery", passed=True, message="fine")],
            )
        ],
    )


def _caught(name: str, check: str, seen: str, evidence: dict[str, object]) -> ScenarioResult:
    step = StepResult(
        path="4",
        kind="expect",
        status="failed",
        message=f"{check} did not hold",
        expected=f"{check} to hold",
        seen=seen,
        verdicts=[
            Verdict(check="history", passed=True, message="4 turns"),
            Verdict(check=check, passed=False, message=seen, evidence=evidence),
        ],
    )
    return _result(name, "failed", steps=[_passed(name).steps[0], step], virtual_seconds=15.0)


def hand_made() -> Matrix:
    """Three faults under two scenarios: one caught by both, one by one (the other errored),
    one survivor; a third scenario left out."""
    one, two = SCENARIOS
    found = Matrix(
        ["skip_replay", "never_expire", "final_flag_early"],
        [one, two],
        left_out={"a flaky scenario": "failed without a planted fault"},
        seconds=12.3456,
    )
    found.cells = {
        ("skip_replay", one): _caught(
            one, "delivery", "position 5 never arrived", {"stream": "s#1", "lost": [5]}
        ),
        ("skip_replay", two): _caught(two, "delivery", "position 3 never arrived", {"lost": [3]}),
        ("never_expire", one): _passed(one),
        ("never_expire", two): _passed(two),
        ("final_flag_early", one): _caught(
            one, "chat", 'the reply ended <early> & "short"', {"chunks": 2}
        ),
        ("final_flag_early", two): _result(two, "error", error="scenario timed out after 30 s"),
    }
    found.clean = RunResult(
        tool="harness golden",
        started="2026-01-02T03:04:05Z",
        seconds=1.5,
        suite="scenarios/golden",
        environment={"toxiproxy": "2.12.0 (http://127.0.0.1:8474)", "python": "3.11.7"},
        scenarios=[_passed(one), _passed(two), _result("a flaky scenario", "failed")],
    )
    return found


def record() -> MatrixResult:
    found = matrix_results.from_matrix(
        hand_made(),
        suite="scenarios/golden",
        jobs=2,
        describe=lambda f: {"skip_replay": "The first replayed message is never sent."}.get(f, ""),
        commit=("0123456789abcdef0123456789abcdef01234567", True),
    )
    return msgspec.structs.replace(found, tool="harness golden")


def test_the_record_holds_every_cell_with_its_verdict_and_evidence() -> None:
    """Each (fault, scenario) once; a failure is caught with its step, check and evidence, an
    error is not caught, a pass is missed; the kill rate and survivors agree with the cells."""
    found = record()
    assert 6 == len(found.cells)
    cell = found.cell("skip_replay", "history survives a reset")
    assert ("caught", "failed") == (cell.verdict, cell.status)
    assert cell.failure is not None
    assert ("4", "delivery", "position 5 never arrived") == (
        cell.failure.path,
        cell.failure.check,
        cell.failure.seen,
    )
    assert {"stream": "s#1", "lost": [5]} == cell.failure.evidence
    errored = found.cell("final_flag_early", "a replay is exact")
    assert ("error", "scenario timed out after 30 s", None) == (
        errored.verdict,
        errored.error,
        errored.failure,
    )
    assert "missed" == found.cell("never_expire", "a replay is exact").verdict
    assert (2, 2 / 3, ["never_expire"]) == (found.killed, found.kill_rate, found.survivors)
    assert ["history survives a reset"] == found.faults[2].killed_by
    assert "The first replayed message is never sent." == found.faults[0].description
    assert [("a flaky scenario", "scenarios/golden/03_flaky.yaml")] == [
        (x.name, x.file) for x in found.left_out
    ]
    assert ("2026-01-02T03:04:05Z", 12.346, 2) == (found.started, found.seconds, found.jobs)
    assert ("0123456789abcdef0123456789abcdef01234567", True) == (found.commit, found.dirty)
    assert "" == matrix_results.inconsistency(found)


def test_read_gives_back_what_write_wrote(tmp_path: Path) -> None:
    """matrix.json round trips, and says what it is: its kind and schema version."""
    path = tmp_path / "matrix.json"
    matrix_results.write(record(), path)
    assert record() == matrix_results.read(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert ("fault_matrix", 1) == (raw["kind"], raw["schema_version"])


def test_read_rejects_another_schema_version_clearly(tmp_path: Path) -> None:
    """A newer or older matrix record is refused with both versions named."""
    raw = json.loads(matrix_results.encode(record()))
    raw["schema_version"] = 7
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ValueError, match=r"matrix.json: fault matrix schema_version 7, this "):
        matrix_results.read(path)


def test_read_rejects_a_runs_results_and_a_run_reader_rejects_a_matrix(tmp_path: Path) -> None:
    """Each reader names the other kind of file rather than failing on a missing field."""
    run = tmp_path / "results.json"
    results.write(RunResult(started="2026-01-02T03:04:05Z", seconds=1.0), run)
    with pytest.raises(ValueError, match="not a fault matrix record"):
        matrix_results.read(run)
    matrix = tmp_path / "matrix.json"
    matrix_results.write(record(), matrix)
    with pytest.raises(ValueError, match=r"a fault matrix record \(matrix.json\), not a run"):
        results.read(matrix)


def test_read_rejects_figures_that_disagree_with_the_cells(tmp_path: Path) -> None:
    """A survivor list (or a kill rate) edited away from what the cells say is an error."""
    path = tmp_path / "matrix.json"
    matrix_results.write(msgspec.structs.replace(record(), survivors=[]), path)
    with pytest.raises(ValueError, match=r"inconsistent fault matrix record: survivors \[\]"):
        matrix_results.read(path)
    matrix_results.write(msgspec.structs.replace(record(), cells=record().cells[1:]), path)
    with pytest.raises(ValueError, match="5 cells for 3 faults x 2 scenarios"):
        matrix_results.read(path)


def test_matrix_md_matches_its_golden_file() -> None:
    check_golden("matrix.md", matrix_markdown.render(record()))


def test_matrix_md_lists_survivors_first_and_marks_each_cell() -> None:
    """The survivor is named before the table and is its first row; every cell is a symbol;
    each catch and error has its evidence line."""
    text = matrix_markdown.render(record())
    assert "**Kill rate:** 2 of 3 faults (67%) caught by at least one scenario" in text
    survivors = text.index("## Not caught by any scenario")
    table = text.index("## The matrix")
    assert survivors < table
    assert "- `never_expire`" in text[survivors:table]
    rows = [line for line in text[table:].splitlines() if line.startswith("| `")]
    assert [
        "| `never_expire` | · | · | 0 |",
        "| `skip_replay` | ✗ | ✗ | 2 |",
        "| `final_flag_early` | ✗ | E | 1 |",
    ] == rows
    assert "  - s2 a replay is exact: ERROR, not counted: scenario timed out after 30 s" in text
    assert (
        "  - s1 history survives a reset: the delivery check at step 4 (expect): "
        "position 5 never arrived" in text
    )
    assert "harness commit 0123456789ab with uncommitted changes" in text


def test_the_matrix_page_shows_every_fault_scenario_and_cell() -> None:
    """Well formed; every fault and scenario named; each cell's symbol with an accessible name
    in words; caught and errored cells link to their evidence on the page; survivors first."""
    text = html.render_matrix(record())
    page = Page(text)
    assert [] == page.open
    assert sorted(set(page.ids)) == sorted(page.ids)
    assert "❌ 1 OF 3 FAULTS SURVIVED" in page.words
    for fault in ("skip_replay", "never_expire", "final_flag_early"):
        assert f"fault-{fault}" in page.ids
    for name in SCENARIOS:
        assert name in page.words
    labels = [a.get("aria-label") or "" for tag, a in page.attrs if tag in ("a", "span")]
    cells = [label for label in labels if " in scenario " in label]
    assert 6 == len(cells)
    assert (
        "skip_replay in scenario 1, history survives a reset: caught by the delivery check "
        "at step 4" in cells
    )
    assert "final_flag_early in scenario 2, a replay is exact: ERROR, not counted as caught" in (
        cells
    )
    links = {a.get("href") for tag, a in page.attrs if tag == "a"}
    for target in ("fault-skip_replay-s1", "fault-skip_replay-s2", "fault-final_flag_early-s2"):
        assert target in page.ids
        assert f"#{target}" in links
    assert text.index('id="survivors"') < text.index('id="matrix"')
    rows = [a.get("class") for tag, a in page.attrs if tag == "tr" and a.get("class")]
    assert ["survived flagged", "killed", "killed"] == rows
    assert "position 5 never arrived" in page.words
    assert "lost" in page.words


def test_the_matrix_page_loads_nothing_and_escapes_the_record() -> None:
    """No Chart.js, no source from anywhere; text from the record stays text."""
    text = html.render_matrix(record())
    page = Page(text)
    assert not [a for _, a in page.attrs if a.get("src") or a.get("href", "#").startswith("http")]
    assert "Chart.register" in text  # the page's own script, whose charts it skips
    library = (Path(html.__file__).parent / "vendor" / html.CHART_JS).read_text(encoding="utf-8")
    assert library[:300] not in text
    assert "&lt;early&gt; &amp; &#34;short&#34;" in text
    assert len(text) < 60_000


def test_a_matrix_of_no_scenario_measured_nothing() -> None:
    """Every scenario left out: no fault could be caught, and the page says so in its own
    words rather than listing survivors as the suite's blind spots."""
    empty = Matrix(["skip_replay"], [], left_out={"a": "failed without a planted fault"})
    found = matrix_results.from_matrix(empty, suite="x", jobs=1, commit=("", False))
    assert "⏭️ NOTHING MEASURED" in Page(html.render_matrix(found)).words
    assert "not from a git checkout" in matrix_markdown.render(found)


def test_write_matrix_writes_the_record_its_pages_and_the_linked_clean_run(
    tmp_path: Path,
) -> None:
    """matrix.json, matrix.md, matrix.html and the clean run's four files, in a stamped folder
    and latest-matrix/; the clean run's record names the matrix, and its report links it."""
    found = hand_made()
    folder = write_matrix(record(), found.clean, tmp_path, "20260102T030405Z")
    assert tmp_path / "20260102T030405Z-matrix" == folder
    names = {"matrix.json", "matrix.md", "matrix.html"} | {
        "results.json",
        "report.md",
        "junit.xml",
        "report.html",
    }
    for where in (folder, tmp_path / "latest-matrix"):
        assert names == {p.name for p in where.iterdir()}
    saved = matrix_results.read(folder / "matrix.json")
    assert "results.json" == saved.clean_run
    clean = results.read(folder / "results.json")
    assert clean.matrix is not None
    assert (3, 2, 2, ["never_expire"]) == (
        clean.matrix.faults,
        clean.matrix.killed,
        clean.matrix.scenarios,
        clean.matrix.survivors,
    )
    report = Page((folder / "report.html").read_text(encoding="utf-8"))
    assert "fault-matrix" in report.ids
    assert "matrix.html" in {a.get("href") for tag, a in report.attrs if tag == "a"}
    assert "1 SURVIVED" in report.words
    page = Page((folder / "matrix.html").read_text(encoding="utf-8"))
    assert "report.html" in {a.get("href") for tag, a in page.attrs if tag == "a"}


def test_report_command_renders_a_matrix_again_from_its_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness report matrix.json --format html|md|json` is what the matrix wrote; junit, a
    merge or a second file is a usage error."""
    folder = write_matrix(record(), hand_made().clean, tmp_path, "stamp")
    source = str(folder / "matrix.json")
    for form, name in (("html", "matrix.html"), ("md", "matrix.md"), ("json", "matrix.json")):
        out = tmp_path / f"again.{form}"
        assert exit_codes.OK == main(["report", source, "--format", form, "--output", str(out)])
        assert (folder / name).read_bytes() == out.read_bytes()
    assert exit_codes.OK == main(["report", source])
    assert "# Fault matrix of `scenarios/golden`" in capsys.readouterr().out
    for args in (
        ["--format", "junit"],
        ["--merge", str(folder / "results.json")],
        [str(folder / "matrix.json")],
    ):
        assert exit_codes.USAGE_ERROR == main(["report", source, *args])
    assert "reported alone" in capsys.readouterr().err


def test_report_command_names_a_bad_matrix_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A matrix record of another schema is a usage error naming the file and both versions."""
    raw = json.loads(matrix_results.encode(record()))
    raw["schema_version"] = 2
    path = tmp_path / "old.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    assert exit_codes.USAGE_ERROR == main(["report", str(path), "--format", "html"])
    assert "fault matrix schema_version 2, this harness reads 1" in capsys.readouterr().err


def test_source_commit_names_this_checkout() -> None:
    """From a git checkout, a 40-digit commit (what the record's `commit` holds)."""
    commit, _ = matrix_results.source_commit()
    if not commit:
        pytest.skip("the harness does not run from a git checkout here")
    assert 40 == len(commit)
    assert all(c in "0123456789abcdef" for c in commit)
