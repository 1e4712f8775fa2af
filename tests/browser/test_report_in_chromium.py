"""report.html of real runs, opened in headless Chromium: it loads, draws, says and can be used.

Each test opens the page from disk, as someone opening a CI artifact would, and checks that
nothing went wrong in the browser (no console error or warning, no uncaught exception, no
request beyond the file itself) besides what it is about.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness import exit_codes
from harness.cli import main
from tests.browser.conftest import Opened, Run, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Page

# The browser first: without it every test here is skipped before the runs are made.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.toxiproxy,
    pytest.mark.browser,
    pytest.mark.usefixtures("browser"),
]

OpenPage = Callable[..., Opened]
PHONE = 375


def test_the_passing_runs_report_shows_every_scenario_and_chart(
    runs: dict[str, Run], open_page: OpenPage
) -> None:
    """No console error, every scenario's section, every chart drawn, the verdict in words."""
    run = runs["passing"]
    opened = open_page(run.html)
    page = opened.page
    assert [] == opened.problems
    assert "ALL PASSED" in page.locator("#verdict").inner_text()
    assert len(run.record.scenarios) == page.locator("section.scenario").count()
    for scenario in run.record.scenarios:
        assert page.get_by_role("heading", name=scenario.name).is_visible()
    canvases = page.locator("canvas[data-chart]")
    drawn = page.locator("canvas[data-rendered=true]")
    assert (
        canvases.count()
        == drawn.count()
        == page.evaluate("Object.keys(window.reportCharts).length")
    )
    # One timeline per client, the ten cycles' latency, the checked memory, the run's latency.
    for chart in ("s4-timeline-1", "s4-latency", "s4-metric-1", "run-distribution"):
        assert page.locator(f"canvas[data-chart={chart}][data-rendered=true]").is_visible()
    screenshot(page, "report-passing-full", full_page=True)
    screenshot(
        page, "report-summary", docs=True, clip={"x": 0, "y": 0, "width": 1100, "height": 760}
    )
    page.locator("#s4-timeline-1").scroll_into_view_if_needed()
    screenshot(page.locator("#s4-timeline-1"), "report-timeline", docs=True)
    screenshot(page.locator("#s4-latency").locator(".."), "report-latency-cycles", docs=True)
    screenshot(
        page.locator("#s4-metric-1").locator("..").locator(".."), "report-metrics", docs=True
    )
    screenshot(page.locator("#latency"), "report-latency", docs=True)


def test_the_failing_runs_report_shows_the_failing_steps_evidence(
    runs: dict[str, Run], open_page: OpenPage
) -> None:
    """The verdict says FAILURES; each failed scenario's first failure, with its evidence, is on
    screen; the timelines mark the duplicate and the loss in their event tables."""
    run = runs["failing"]
    opened = open_page(run.html)
    page = opened.page
    assert [] == opened.problems
    assert "FAILURES" in page.locator("#verdict").inner_text()
    failed = [s for s in run.record.scenarios if s.status == "failed"]
    assert 3 == len(failed)
    for n, scenario in enumerate(run.record.scenarios, 1):
        if scenario.status != "failed":
            continue
        box = page.locator(f"#s{n}-failure")
        box.scroll_into_view_if_needed()
        assert box.is_visible()
        step = scenario.first_failure
        assert step is not None
        assert f"First failure: step {step.path}" in box.inner_text()
        assert step.seen in box.inner_text()
    doubled = page.locator("section.scenario", has_text="a replay is not doubled")
    assert doubled.get_by_text("duplicated", exact=True).is_visible()
    assert doubled.get_by_text("DUPLICATE", exact=True).first.is_visible()
    skipped = page.locator("section.scenario", has_text="a replay skips nothing")
    assert skipped.get_by_text("LOST", exact=True).first.is_visible()
    screenshot(page, "report-failing-full", full_page=True)
    screenshot(doubled.locator(".failure"), "report-failure", docs=True)
    timeline = skipped.locator("figure.chart").first
    timeline.scroll_into_view_if_needed()
    screenshot(timeline, "report-timeline-loss", docs=True)
    events = skipped.locator("details", has_text="Events of client")
    screenshot(events, "report-events", docs=True)


def test_everything_on_the_page_is_reachable_by_keyboard(
    runs: dict[str, Run], open_page: OpenPage
) -> None:
    """Tab reaches the skip link first, then every link, control, summary and scrolling table;
    Enter opens a collapsed summary; Space ticks the filter, which hides what passed."""
    page = open_page(runs["failing"].html).page
    page.keyboard.press("Tab")
    assert "skip" == page.evaluate("document.activeElement.className")
    # Number what should be reachable: links, controls (a radio group once, by its checked
    # radio), summaries and scrolling tables, where visible.
    expected = page.evaluate(
        """() => [...document.querySelectorAll('a[href], input, summary, [tabindex="0"]')]
            .filter(e => e.checkVisibility() && !(e.type === 'radio' && !e.checked))
            .map((e, i) => { e.dataset.kb = i; return String(i); })"""
    )
    reached = set()
    hidden_focus = []
    for _ in range(len(expected) + 3):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.dataset.kb || ''"))
        if not _focus_ring(page):
            hidden_focus.append(page.evaluate("document.activeElement.outerHTML.slice(0, 80)"))
    assert set(expected) <= reached | {"0"}  # 0, the skip link, was reached before the loop
    assert [] == hidden_focus  # focus is always visible
    summary = page.locator("section.scenario.status-passed details > summary").first
    summary.focus()
    page.keyboard.press("Enter")
    assert page.locator("section.scenario.status-passed details").first.get_attribute("open") == ""
    page.locator("#only-problems").focus()
    page.keyboard.press("Space")
    assert page.locator("section.scenario.status-passed").first.is_hidden()
    assert page.locator("section.scenario.status-failed").first.is_visible()


def test_the_time_axis_switches_between_the_targets_clock_and_wall_time(
    runs: dict[str, Run], open_page: OpenPage
) -> None:
    """With "wall time" chosen, every timeline point sits at its wall second."""
    page = open_page(runs["passing"].html).page
    page.get_by_label("wall time").check()
    moved = page.evaluate(
        """() => Object.values(window.reportCharts)
            .filter(c => c.options.kind === 'timeline')
            .every(c => c.data.datasets.every(d => d.data.every(p => p.x === p.w)))"""
    )
    assert moved
    assert "(wall time)" in page.evaluate(
        "window.reportCharts['s4-timeline-1'].options.scales.x.title.text"
    )


def _focus_ring(page: Page) -> bool:
    """Whether the focused element draws a focus outline (the page's :focus-visible style);
    true when Tab went past the last element and the page itself has focus."""
    return bool(
        page.evaluate(
            """() => { const e = document.activeElement;
                if (e === document.body) return true;  // past the last element: nothing focused
                const s = getComputedStyle(e);
                return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }"""
        )
    )


def test_the_passing_report_works_at_a_phones_width(
    runs: dict[str, Run], open_page: OpenPage
) -> None:
    """The passing run's page (ten cycles' timelines, metrics, distributions) at 375 px: no
    sideways scroll, every chart drawn inside the screen, nothing wrong in the browser."""
    opened = open_page(runs["passing"].html, width=PHONE, height=800)
    page = opened.page
    assert [] == opened.problems
    assert PHONE >= page.evaluate("document.documentElement.scrollWidth")
    boxes = page.evaluate(
        """[...document.querySelectorAll('canvas[data-chart]')].map(c => {
            const r = c.getBoundingClientRect(); return [c.dataset.rendered, r.left, r.right]; })"""
    )
    assert boxes
    assert all(drawn == "true" and 0 <= left and right <= PHONE for drawn, left, right in boxes)


def test_the_report_works_at_a_phones_width(runs: dict[str, Run], open_page: OpenPage) -> None:
    """At 375 px nothing makes the page scroll sideways; charts fit; the evidence is readable."""
    page = open_page(runs["failing"].html, width=PHONE, height=800).page
    assert PHONE >= page.evaluate("document.documentElement.scrollWidth")
    widths = page.evaluate(
        "[...document.querySelectorAll('canvas')].map(c => c.getBoundingClientRect().width)"
    )
    assert widths
    assert all(0 < w <= PHONE for w in widths)
    box = page.locator(".failure").first
    box.scroll_into_view_if_needed()
    assert box.is_visible()
    screenshot(page, "report-phone", docs=True)


def test_the_report_reads_without_colour(runs: dict[str, Run], open_page: OpenPage) -> None:
    """In grey, every status still has its word and every flagged line its flag (the charts'
    distinct shapes are checked in tests/unit/harness/test_html_report.py)."""
    opened = open_page(runs["failing"].html)
    page = opened.page
    page.add_style_tag(content="html { filter: grayscale(1); }")
    badges = page.locator(".badge").all_inner_texts()
    assert badges
    assert all(any(w in b for w in ("PASSED", "FAILED", "ERROR", "SKIPPED")) for b in badges)
    flags = page.locator("tr.flagged .flag").all_inner_texts()
    assert {"DUPLICATE", "LOST", "CHECK FAILED"} <= set(flags)
    section = page.locator("section.scenario", has_text="a replay is not doubled")
    chart = section.locator("figure.chart").first
    chart.scroll_into_view_if_needed()
    screenshot(chart, "report-grey", docs=True)
    assert [] == opened.problems


def test_the_comparison_page_of_the_two_runs(
    runs: dict[str, Run], open_page: OpenPage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`harness report --compare` of the passing and the failing run: its new failures, the
    latency chart drawn, nothing wrong in the browser."""
    for folder, name in (("main", "passing"), ("pr", "failing")):
        (tmp_path / folder).mkdir()
        shutil.copyfile(runs[name].folder / "results.json", tmp_path / folder / "results.json")
    monkeypatch.chdir(tmp_path)  # the page names the files as they were given
    args = ["report", "--compare", "main/results.json", "pr/results.json", "--format", "html"]
    assert exit_codes.OK == main([*args, "--output", "compare.html"])
    opened = open_page(tmp_path / "compare.html")
    page = opened.page
    assert [] == opened.problems
    assert "3 new failures" in page.locator("#verdict").inner_text()
    assert page.locator("canvas[data-chart=compare-latency][data-rendered=true]").is_visible()
    assert 3 == page.locator("#new-failures .failure").count()
    screenshot(page, "compare", docs=True, clip={"x": 0, "y": 0, "width": 1100, "height": 900})


def test_the_comparison_page_by_keyboard_in_grey_and_at_a_phones_width(
    runs: dict[str, Run], open_page: OpenPage, tmp_path: Path
) -> None:
    """The comparison page meets the run report's rules too: Tab reaches every link, summary
    and scrolling table with a visible focus ring; in grey its verdict changes carry words; at
    375 px it does not scroll sideways."""
    from harness.report import compare, html
    from harness.results import read

    base, new = (read(runs[n].folder / "results.json") for n in ("passing", "failing"))
    page_file = tmp_path / "compare.html"
    found = compare.compare(base, new, base_name="main", new_name="pr")
    page_file.write_text(html.render_comparison(found), encoding="utf-8")
    opened = open_page(page_file)
    page = opened.page
    page.keyboard.press("Tab")
    assert "skip" == page.evaluate("document.activeElement.className")
    expected = page.evaluate(
        """() => [...document.querySelectorAll('a[href], summary, [tabindex="0"]')]
            .filter(e => e.checkVisibility())
            .map((e, i) => { e.dataset.kb = i; return String(i); })"""
    )
    reached = set()
    for _ in range(len(expected) + 3):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.dataset.kb || ''"))
        assert _focus_ring(page), page.evaluate("document.activeElement.outerHTML.slice(0, 80)")
    assert set(expected) <= reached | {"0"}
    page.add_style_tag(content="html { filter: grayscale(1); }")
    badges = page.locator("#changes .badge").all_inner_texts()
    assert badges
    assert all(any(w in b for w in ("PASSED", "FAILED", "ERROR", "SKIPPED")) for b in badges)
    assert [] == opened.problems
    phone = open_page(page_file, width=PHONE, height=800).page
    assert PHONE >= phone.evaluate("document.documentElement.scrollWidth")
    screenshot(phone, "compare-phone")
