"""matrix.html of a real ``harness matrix``, opened in headless Chromium.

The matrix is run once (``matrix_run`` in conftest.py: three scenarios, four faults, one of
which none of them can see); each test opens its page from disk and checks that nothing went
wrong in the browser besides what it is about.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness import exit_codes, matrix_results
from harness.cli import main
from tests.browser.conftest import MATRIX_FAULTS, MatrixRun, Opened, screenshot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.toxiproxy,
    pytest.mark.browser,
    pytest.mark.usefixtures("browser"),
]

OpenPage = Callable[..., Opened]
PHONE = 375
SURVIVOR = "rows_left_after_expiry"


def test_the_matrix_run_caught_all_but_the_survivor(matrix_run: MatrixRun) -> None:
    """The run the page is made from: exit 1 (a fault survived), the survivor the one fault no
    scenario here can see, the others caught, no cell errored."""
    record = matrix_results.read(matrix_run.folder / "matrix.json")
    assert exit_codes.SCENARIO_FAILED == matrix_run.code
    assert [SURVIVOR] == record.survivors
    assert list(MATRIX_FAULTS) == [f.name for f in record.faults]
    assert 3 == len(record.scenarios)
    assert [] == [c for c in record.cells if c.verdict == "error"]


def test_the_matrix_page_shows_every_fault_scenario_and_the_survivor_first(
    matrix_run: MatrixRun, open_page: OpenPage
) -> None:
    """No console error; every fault has its row and its evidence section, every scenario its
    column; the survivor is listed above the table and is the table's first row."""
    record = matrix_results.read(matrix_run.folder / "matrix.json")
    opened = open_page(matrix_run.html)
    page = opened.page
    assert [] == opened.problems
    assert "1 OF 4 FAULTS SURVIVED" in page.locator("#verdict").inner_text()
    survivors = page.locator("#survivors")
    assert survivors.is_visible()
    assert SURVIVOR in survivors.inner_text()
    rows = page.locator("table.matrix tbody tr")
    assert len(MATRIX_FAULTS) == rows.count()
    assert SURVIVOR in rows.first.inner_text()
    assert "SURVIVED" in rows.first.inner_text()
    for fault in MATRIX_FAULTS:
        assert page.locator(f"table.matrix tbody th:has-text('{fault}')").is_visible()
        assert 1 == page.locator(f"section#fault-{fault}").count()
    columns = page.locator("#columns tbody").inner_text()
    for scenario in record.scenarios:
        assert scenario.name in columns
        assert scenario.file in columns
    screenshot(page, "matrix-full", full_page=True)
    screenshot(
        page, "matrix-summary", docs=True, clip={"x": 0, "y": 0, "width": 1100, "height": 560}
    )
    screenshot(page.locator("#matrix"), "matrix", docs=True)


def test_each_caught_cell_leads_to_its_evidence(matrix_run: MatrixRun, open_page: OpenPage) -> None:
    """Every caught cell is a link to an element on the page that names its step, the check
    that failed and what it saw; following one brings that evidence on screen."""
    record = matrix_results.read(matrix_run.folder / "matrix.json")
    page = open_page(matrix_run.html).page
    links = page.locator("table.matrix td.cell-caught a")
    caught = [c for c in record.cells if c.verdict == "caught"]
    assert len(caught) == links.count()
    for i in range(links.count()):
        target = links.nth(i).get_attribute("href")
        assert target is not None
        assert 1 == page.locator(target).count()
    cell = next(c for c in caught if c.fault == "swap_replay")
    assert cell.failure is not None
    link = page.locator("table.matrix td.cell-caught a[href^='#fault-swap_replay-']").first
    link.click()
    box = page.locator(str(link.get_attribute("href")))
    assert box.is_visible()
    assert box.evaluate("e => e.matches(':target')")
    text = box.inner_text()
    assert f"Step {cell.failure.path}" in text
    assert cell.failure.check in text
    assert cell.failure.seen.split("\n")[0][:40] in text
    screenshot(box, "matrix-evidence", docs=True)


def test_the_matrix_is_reachable_by_keyboard(matrix_run: MatrixRun, open_page: OpenPage) -> None:
    """Tab reaches the skip link first, then the table's scrolling box and each link in it, with
    a visible focus ring; Enter on a cell follows it to its evidence."""
    page = open_page(matrix_run.html).page
    page.keyboard.press("Tab")
    assert "skip" == page.evaluate("document.activeElement.className")
    expected = page.evaluate(
        """() => [document.querySelector('.matrix-scroll'),
                  ...document.querySelectorAll('table.matrix a')]
            .map((e, i) => { e.dataset.kb = i; return String(i); })"""
    )
    reached: list[str] = []
    for _ in range(200):
        page.keyboard.press("Tab")
        mark = page.evaluate("document.activeElement.dataset.kb || ''")
        if mark:
            reached.append(mark)
            ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert "none" != ring, mark
        if set(expected) <= set(reached):
            break
    assert set(expected) <= set(reached)
    cell = page.locator("table.matrix td.cell-caught a").first
    cell.focus()
    page.keyboard.press("Enter")
    assert cell.get_attribute("href") == page.evaluate("location.hash")
    assert page.locator(str(cell.get_attribute("href"))).is_visible()


def test_the_matrix_reads_without_colour(matrix_run: MatrixRun, open_page: OpenPage) -> None:
    """In grey, every cell is still a symbol with its meaning in words, and the survivor's row
    says SURVIVED."""
    page = open_page(matrix_run.html).page
    page.add_style_tag(content="html { filter: grayscale(1); }")
    symbols = page.locator("table.matrix td.cell").all_inner_texts()
    assert symbols
    assert set(symbols) <= {"✗", "·", "E", "-"}
    assert {"✗", "·"} <= set(symbols)
    labels = page.locator("table.matrix td.cell [aria-label]").evaluate_all(
        "es => es.map(e => e.getAttribute('aria-label'))"
    )
    assert len(symbols) == len(labels)
    assert all(": caught" in label or ": missed" in label for label in labels)
    assert "SURVIVED" in page.locator("table.matrix tbody tr.survived").inner_text()
    legend = page.locator("#matrix-legend").inner_text()
    assert "caught" in legend
    assert "missed" in legend
    screenshot(page.locator("#matrix"), "matrix-grey")


def test_the_matrix_works_at_a_phones_width(matrix_run: MatrixRun, open_page: OpenPage) -> None:
    """At 375 px, and at the narrowest phones' 320, the page does not scroll sideways; where the
    table is wider than the screen it scrolls inside its own box; the survivors come first."""
    page = open_page(matrix_run.html, width=PHONE, height=800).page
    assert PHONE >= page.evaluate("document.documentElement.scrollWidth")
    assert page.locator("#survivors").is_visible()
    screenshot(page, "matrix-phone-top")
    box = page.locator(".matrix-scroll")
    box.scroll_into_view_if_needed()
    screenshot(page.locator("#matrix"), "matrix-phone", docs=True)
    narrow = open_page(matrix_run.html, width=320, height=800).page
    box = narrow.locator(".matrix-scroll")
    inner, outer, right = box.evaluate(
        "e => [e.scrollWidth, e.clientWidth, e.getBoundingClientRect().right]"
    )
    assert inner > outer  # the table is wider than its box here: it scrolls there
    assert 320 >= right
    assert 320 >= narrow.evaluate("document.documentElement.scrollWidth")
    box.evaluate("e => { e.scrollLeft = e.scrollWidth; }")
    assert 0 < box.evaluate("e => e.scrollLeft")
    assert 320 >= narrow.evaluate("document.documentElement.scrollWidth")


def test_the_clean_runs_report_links_the_matrix(matrix_run: MatrixRun, open_page: OpenPage) -> None:
    """The report.html beside the matrix (its clean run) says it is one, with the kill rate and
    the survivor, and its link opens matrix.html; the matrix page links back."""
    opened = open_page(matrix_run.folder / "report.html")
    page = opened.page
    assert [] == opened.problems
    section = page.locator("#fault-matrix")
    assert "3 of 4 faults (75%) caught" in section.inner_text()
    assert SURVIVOR in section.inner_text()
    screenshot(section, "report-matrix", docs=True)
    section.get_by_role("link").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/matrix.html")
    assert page.locator("#verdict").is_visible()
    page.get_by_role("link", name="report.html").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/report.html")
    assert [] == opened.problems


def test_harness_report_makes_the_matrix_files_again_from_matrix_json(
    matrix_run: MatrixRun, tmp_path: Path
) -> None:
    """matrix.html and matrix.md are what `harness report matrix.json` makes from the record."""
    source = str(matrix_run.folder / "matrix.json")
    for form, name in (("html", "matrix.html"), ("md", "matrix.md")):
        again = tmp_path / name
        assert exit_codes.OK == main(["report", source, "--format", form, "--output", str(again)])
        assert (matrix_run.folder / name).read_bytes() == again.read_bytes()
