"""`harness report --compare`: verdict changes, new failures, latency and metric ratios.

The base run is the hand-built run of test_reports.py; the new one changes it on purpose. The
markdown is compared with tests/golden/compare.md (``UPDATE_GOLDEN=1`` rewrites it).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from harness import exit_codes, results
from harness.checkers import Verdict
from harness.cli import main
from harness.history import MetricsValue, Op
from harness.report import compare, html
from harness.results import RunResult, ScenarioResult, StepResult
from harness.scenario import load_text
from tests.unit.harness.test_reports import ERRORED, FAILING, PASSING, RECORD, SKIPPED, check_golden

MEMORY = "process_resident_memory_bytes"


def slower(scenario: ScenarioResult, by: float) -> ScenarioResult:
    """The scenario with every completion ``by`` seconds later than its invocation was."""
    ops = [
        msgspec.structs.replace(op, time=op.time + by) if op.phase in ("ok", "fail") else op
        for op in scenario.history
    ]
    return msgspec.structs.replace(scenario, history=ops)


def with_memory(scenario: ScenarioResult, first: float, last: float) -> ScenarioResult:
    """The scenario checking the growth of resident memory, with two readings."""
    definition = load_text(
        f"""
name: {scenario.name}
steps:
  - connect:
  - expect:
      metrics:
        - {{name: {MEMORY}, growth: "< 5%"}}
"""
    )
    n = len(scenario.history)
    readings = [
        Op(index=n + i, id=900 + i, process="target", phase="ok", time=1.0 + i, body=body)
        for i, body in enumerate(
            [MetricsValue(samples={MEMORY: first}), MetricsValue(samples={MEMORY: last})]
        )
    ]
    growth = (last - first) / first
    verdict = Verdict(
        check="metrics",
        passed=growth < 0.05,
        message=f"{MEMORY} grew {growth:.2%}",
        evidence={"first": first, "last": last, "growth": growth},
    )
    step = StepResult(path="9", kind="expect", status="passed", verdicts=[verdict])
    return msgspec.structs.replace(
        scenario,
        scenario=definition,
        history=[*scenario.history, *readings],
        steps=[*scenario.steps, step],
    )


BASE = msgspec.structs.replace(
    RECORD, scenarios=[with_memory(PASSING, 100e6, 101e6), FAILING, SKIPPED, ERRORED]
)
FIXED = msgspec.structs.replace(FAILING, status="passed", steps=FAILING.steps[:3])
BROKEN = msgspec.structs.replace(with_memory(slower(PASSING, 0.004), 100e6, 130e6), status="failed")
BROKEN = msgspec.structs.replace(
    BROKEN,
    steps=[
        *BROKEN.steps[:-1],
        msgspec.structs.replace(
            BROKEN.steps[-1],
            status="failed",
            message="expected metrics to hold; saw growth 30%",
            expected="metrics to hold",
            seen="process_resident_memory_bytes grew 30.00%",
            verdicts=[msgspec.structs.replace(BROKEN.steps[-1].verdicts[0], passed=False)],
        ),
    ],
)
ADDED = msgspec.structs.replace(ERRORED, name="a new scenario", file="scenarios/golden/05_new.yaml")
NEW = msgspec.structs.replace(
    RECORD, started="2026-01-03T03:04:05Z", seconds=4.2, scenarios=[BROKEN, FIXED, SKIPPED, ADDED]
)
FOUND = compare.compare(BASE, NEW, base_name="main/results.json", new_name="pr/results.json")


def test_scenarios_whose_verdict_changed_are_listed_in_order() -> None:
    """Base order first, then scenarios only in the new run; unchanged ones are left out."""
    assert [
        ("history survives a reset", "passed", "failed"),
        ("a doubled replay is caught", "failed", "passed"),
        ("waits too long", "error", None),
        ("a new scenario", None, "error"),
    ] == [(c.name, c.base, c.new) for c in FOUND.changed]
    assert ["a doubled replay is caught"] == [c.name for c in FOUND.fixed]


def test_new_failures_carry_their_first_failed_step_and_its_evidence() -> None:
    """A scenario that passed before and fails now, and one that is new and errors."""
    assert [("history survives a reset", "passed", "9"), ("a new scenario", None, "1")] == [
        (f.scenario.name, f.base, f.step.path if f.step else None) for f in FOUND.new_failures
    ]
    verdict = FOUND.new_failures[0].verdict
    assert verdict is not None
    assert 130e6 == verdict.evidence["last"]


def test_latency_figures_have_their_ratio_and_mark() -> None:
    """The slowest connect of the run went from 3 ms to 7 ms (the new run's history has every
    completion of one scenario 4 ms later): 2.33x, marked slower."""
    run = {(f.operation, f.statistic): f for f in FOUND.latency if not f.scenario}
    connect = run[("connect", "max")]
    assert (3.0, 7.0, 2, 2) == (
        round(connect.base or 0, 6),
        round(connect.new or 0, 6),
        connect.base_n,
        connect.new_n,
    )
    assert "▲" == connect.mark
    assert "2.33x ▲ slower" == compare.ratio_text(connect, "slower", "faster")
    per = {(f.scenario, f.operation, f.statistic) for f in FOUND.latency if f.scenario}
    assert ("history survives a reset", "resume", "p50") in per


def test_a_checked_metric_is_compared_by_what_its_check_judged() -> None:
    """Resident memory: the last reading and the growth its check measured, in both runs."""
    figures = {(f.operation, f.statistic): f for f in FOUND.metrics}
    last, growth = figures[(MEMORY, "last")], figures[(MEMORY, "growth")]
    assert (101e6, 130e6) == (last.base, last.new)
    assert pytest.approx(130 / 101) == last.ratio
    assert (pytest.approx(0.01), pytest.approx(0.3)) == (growth.base, growth.new)


def test_the_comparison_markdown_matches_its_golden_file() -> None:
    """The markdown of the hand-built comparison is exactly tests/golden/compare.md."""
    check_golden("compare.md", compare.render(FOUND))


def test_two_identical_runs_change_nothing() -> None:
    """A run compared with itself: no verdict change, no new failure, every ratio 1."""
    same = compare.compare(RECORD, RECORD)
    assert ([], []) == (same.changed, same.new_failures)
    assert {1.0} == {f.ratio for f in same.latency if f.ratio is not None}
    text = compare.render(same)
    assert "None: every scenario has the same verdict in both runs." in text
    assert "## New failures\n\nNone." in text


def test_the_comparison_page_holds_the_same_findings() -> None:
    """The HTML comparison: the changes, the new failure's evidence, the latency chart."""
    text = html.render_comparison(FOUND)
    assert "❌ 2 new failures" in text
    assert "process_resident_memory_bytes grew 30.00%" in text
    assert 'data-chart="compare-latency"' in text
    assert "2.5 → 2.5 ms (1.00x)" in text


def write_pair(tmp_path: Path) -> tuple[str, str]:
    results.write(BASE, tmp_path / "base.json")
    results.write(NEW, tmp_path / "new.json")
    return str(tmp_path / "base.json"), str(tmp_path / "new.json")


def test_compare_command_prints_markdown_or_writes_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness report --compare BASE NEW` prints the markdown; `--format html --output` writes
    the page; both exit 0 whatever changed."""
    base, new = write_pair(tmp_path)
    assert exit_codes.OK == main(["report", "--compare", base, new])
    expected = compare.render(
        compare.compare(
            results.read(Path(base)), results.read(Path(new)), base_name=base, new_name=new
        )
    )
    assert expected == capsys.readouterr().out
    out = tmp_path / "compare.html"
    args = ["report", "--compare", base, new, "--format", "html", "--output", str(out)]
    assert exit_codes.OK == main(args)
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")


@pytest.mark.parametrize(
    "extra",
    [["--format", "junit"], ["--merge"], ["ONE_MORE"], ["ONLY_ONE"]],
    ids=["junit", "merge", "three-files", "one-file"],
)
def test_compare_command_needs_two_files_and_md_or_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    """Anything but two results files with --format md or html is a usage error."""
    base, new = write_pair(tmp_path)
    files = (
        [base] if extra == ["ONLY_ONE"] else [base, new] + ([new] if extra == ["ONE_MORE"] else [])
    )
    flags = [] if extra in (["ONLY_ONE"], ["ONE_MORE"]) else extra
    assert exit_codes.USAGE_ERROR == main(["report", "--compare", *files, *flags])
    assert "--compare takes two results files" in capsys.readouterr().err


def test_a_record_round_trip_compares_the_same(tmp_path: Path) -> None:
    """Comparing the files gives what comparing the records gives."""
    base, new = write_pair(tmp_path)
    again = compare.compare(results.read(Path(base)), results.read(Path(new)))
    assert compare.render(compare.compare(BASE, NEW)) == compare.render(again)
    assert isinstance(results.read(Path(new)), RunResult)
