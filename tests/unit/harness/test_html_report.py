"""report.html without a browser: what the page holds, that it loads nothing, that it is safe.

The browser tests (tests/browser/) open real runs' pages in Chromium; these check the page's
content on the hand-built run of test_reports.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest

from harness import exit_codes, results
from harness.cli import main
from harness.report import html, markdown, write_all
from harness.results import VERDICT_TEXT, RunResult, StepResult
from tests.unit.harness.test_reports import FAILING, PASSING, RECORD, SKIPPED

VENDOR = Path(html.__file__).parent / "vendor"
CHART_JS_SHA256 = "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"


class Page(HTMLParser):
    """The parts of a page the tests look at: elements by id, attributes, script texts, text."""

    VOID: ClassVar = {"meta", "br", "input", "img", "link", "hr", "wbr", "col", "source"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.attrs: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str, str] = {}
        self.text: list[str] = []
        self.open: list[str] = []
        self._script: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.attrs.append((tag, found))
        if found.get("id"):
            self.ids.append(str(found["id"]))
        if tag == "script":
            self._script = str(found.get("id") or f"script-{len(self.scripts)}")
            self.scripts[self._script] = ""
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open[-1:] == [tag], f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()
        self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts[self._script] += data
        elif data.strip():
            self.text.append(" ".join(data.split()))

    @property
    def words(self) -> str:
        return " ".join(self.text)


@pytest.fixture(scope="module")
def page() -> Page:
    return Page(html.render(RECORD))


def test_the_page_is_well_formed_and_its_ids_are_unique(page: Page) -> None:
    """Every element is closed in order, and no id is used twice."""
    assert [] == page.open
    assert sorted(set(page.ids)) == sorted(page.ids)


def test_the_page_loads_nothing_from_anywhere(page: Page) -> None:
    """No src, no stylesheet link, no url(): scripts and styles are inline, and the CSP says so."""
    assert [] == [(tag, a) for tag, a in page.attrs if "src" in a or tag in ("link", "iframe")]
    csp = next(
        a["content"] for tag, a in page.attrs if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert str(csp).startswith("default-src 'none'")
    rendered = html.render(RECORD)
    assert "url(" not in rendered.split("<script>", 1)[0]
    assert "sourceMappingURL" not in rendered


def test_the_verdict_and_the_counts_are_those_of_the_run(page: Page) -> None:
    """The verdict banner says what VERDICT_TEXT says; the counts are the run's totals."""
    assert VERDICT_TEXT["failed"] in page.words
    assert "1 ✅ passed 1 ❌ failed 1 ⚠️ errors 1 ⏭️ skipped" in page.words


def test_a_run_that_verified_nothing_says_so_in_its_own_words() -> None:
    """All skipped: the banner is NOTHING VERIFIED with its own style, never a pass."""
    record = msgspec.structs.replace(RECORD, scenarios=[SKIPPED])
    text = html.render(record)
    assert 'class="verdict verdict-nothing_verified"' in text
    assert VERDICT_TEXT["nothing_verified"] in text
    assert "this run says nothing about the target" in text
    assert VERDICT_TEXT["passed"] not in text


def test_every_scenario_has_its_section_status_and_steps(page: Page) -> None:
    """One section per scenario, in run order, each with its name and a status word."""
    sections = [
        a["id"] for tag, a in page.attrs if tag == "section" and "scenario" in str(a.get("class"))
    ]
    assert ["s1", "s2", "s3", "s4"] == sections
    for scenario in RECORD.scenarios:
        assert scenario.name in page.words
    for word in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
        assert word in page.words
    assert "Skipped: the target offers no clock control" in page.words
    assert "timed out after 2 s" in page.words


def test_the_failed_step_shows_expected_seen_evidence_and_a_hint(page: Page) -> None:
    """The first failure of the failing scenario: its step, what was expected and seen, the
    evidence of its failed check, the same hint as report.md."""
    words = page.words
    assert "First failure: step 4 ( expect ) FAILED" in words
    assert "Expected delivery to hold Seen position 5 was delivered twice | once more" in words
    assert "duplicated [5] lost []" in words
    assert markdown._HINTS["delivery"] in words
    assert "s2-failure" in page.ids


def test_the_summary_says_what_report_md_says(page: Page) -> None:
    """Each summary line of report.md is in the page, in the same words."""
    for line in markdown._summary(RECORD):
        label, text = re.match(r"- \*\*(.+?):\*\* (.*)", line).groups()  # type: ignore[union-attr]
        assert f"{label}: {text}" in page.words


def test_the_timeline_marks_the_duplicate_and_lists_the_events(page: Page) -> None:
    """The failing scenario's timeline draws position 5 as a duplicate named by step 4, and its
    event table says so in words."""
    data = json.loads(page.scripts["chart-data"])
    datasets = {d["kind"]: d for d in data["s2-timeline-1"]["data"]["datasets"]}
    assert ["position 5 delivered"] == [p["label"] for p in datasets["delivered"]["data"]]
    assert (
        "DUPLICATE: position 5 delivered again; named by the check of step 4"
        == (datasets["duplicate"]["data"][0]["label"])
    )
    assert "DUPLICATE position 5 delivered again; named by the check of step 4" in page.words
    assert "virtual clock +15 s" in page.words


def test_every_chart_has_a_canvas_data_and_an_accessible_name(page: Page) -> None:
    """Each canvas names its chart in the data and has an aria-label; each chart's series differ
    in shape or dash, not only in colour."""
    data = json.loads(page.scripts["chart-data"])
    canvases = {a["data-chart"]: a for tag, a in page.attrs if tag == "canvas"}
    assert sorted(data) == sorted(canvases)
    assert all(a.get("role") == "img" and a.get("aria-label") for a in canvases.values())
    for config in data.values():
        looks = [
            (
                d.get("pointStyle"),
                d.get("pointRotation", 0),
                tuple(d.get("borderDash", [])),
                d.get("pattern"),
                d.get("backgroundColor") == "rgba(0,0,0,0)",
            )
            for d in config["data"]["datasets"]
        ]
        assert len(set(looks)) == len(looks), config["kind"]


def test_the_latency_and_metric_charts_carry_what_was_measured() -> None:
    """Latency by occurrence for a scenario with repeated operations; the run's distribution."""
    record = msgspec.structs.replace(RECORD, scenarios=[PASSING, FAILING])
    page = Page(html.render(record))
    data = json.loads(page.scripts["chart-data"])
    assert "run-distribution" in data
    connect = next(
        d for d in data["run-distribution"]["data"]["datasets"] if d["label"].startswith("connect")
    )
    assert [3.0, 2.5] == sorted((p["x"] for p in connect["data"]), reverse=True)


def test_text_from_the_record_cannot_break_out_of_the_page() -> None:
    """A scenario named like markup is escaped in the page and in the chart data."""
    evil = "</script><script>alert(1)</script><b>"
    record = msgspec.structs.replace(
        RECORD, scenarios=[msgspec.structs.replace(FAILING, name=evil)]
    )
    text = html.render(record)
    assert evil not in text
    page = Page(text)
    assert evil in page.words
    json.loads(page.scripts["chart-data"])


def test_rendering_is_deterministic() -> None:
    """The same record, or its decoded copy, gives the same page byte for byte."""
    copy = msgspec.json.decode(results.encode(RECORD), type=RunResult, dec_hook=results._dec_hook)
    assert html.render(RECORD) == html.render(copy)


def test_the_vendored_chart_js_is_the_published_file() -> None:
    """vendor/chart.umd.min.js is Chart.js 4.6.1 from npm, unmodified (vendor/README.md)."""
    data = (VENDOR / "chart.umd.min.js").read_bytes()
    assert CHART_JS_SHA256 == hashlib.sha256(data).hexdigest()
    assert data.startswith(b"/*!\n * Chart.js v4.6.1\n")
    assert CHART_JS_SHA256 in (VENDOR / "README.md").read_text(encoding="utf-8")


def test_write_all_writes_report_html(tmp_path: Path) -> None:
    """A run's folder and latest/ hold report.html, the page of its results.json."""
    write_all(RECORD, tmp_path, "20260102T030405Z")
    assert html.render(RECORD) == (tmp_path / "latest" / "report.html").read_text(encoding="utf-8")


def test_report_command_renders_html_from_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness report results.json --format html` prints the page of that run."""
    results.write(RECORD, tmp_path / "results.json")
    code = main(["report", str(tmp_path / "results.json"), "--format", "html"])
    assert (exit_codes.OK, html.render(RECORD)) == (code, capsys.readouterr().out)


def test_a_scenario_of_many_steps_lists_the_failed_ones_and_counts_the_rest() -> None:
    """Past 200 steps the table keeps the first 100, every failed one, and counts the others."""
    many = [
        StepResult(path=str(n), kind="chat", status="passed", message="1 message(s) answered")
        for n in range(1, 301)
    ]
    failed = StepResult(path="301", kind="expect", status="failed", message="it broke")
    scenario = msgspec.structs.replace(FAILING, steps=[*many, failed])
    page = Page(html.render(msgspec.structs.replace(RECORD, scenarios=[scenario])))
    assert "✓ 200 more steps passed, not listed here (200 chat); every one is in results.json." in (
        page.words
    )
    assert "it broke" in page.words
    assert "Steps (301: 300 passed, 1 did not)" in page.words
