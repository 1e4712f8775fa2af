"""Real runs and a real browser for the report tests: Debian's Chromium driven by Playwright.

Playwright's Python package drives the system browser (``/usr/bin/chromium``, or
``HARNESS_CHROMIUM``); it never downloads one. Without that browser, or without Playwright,
every test here is skipped with the reason and the command that installs it (scripts/setup runs
that command when it runs as root, as CI does).

The runs are real: the seed suite through the engine (embedded reference server, Toxiproxy),
and the same suite with faults planted so that three scenarios fail (a doubled replay, a
skipped replay, a session that never expires). Screenshots go to ``reports/screenshots/``,
which CI keeps as an artifact; with ``UPDATE_SCREENSHOTS=1`` the tests also rewrite the
pictures of docs/reports.md under ``docs/img/``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from harness.cli import main
from harness.engine import Engine, RunOptions
from harness.report import write_all
from harness.results import RunResult
from harness.scenario import Scenario, load_files, load_text

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "scenarios" / "seed"
SCREENSHOTS = ROOT / "reports" / "screenshots"
DOCS_IMAGES = ROOT / "docs" / "img"
UPDATE_DOCS = os.environ.get("UPDATE_SCREENSHOTS") == "1"

CHROMIUM = Path(os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium"))
INSTALL = (
    "apt-get install -y chromium chromium-driver fonts-noto-color-emoji "
    "(as root; scripts/setup does it when run as root)"
)
# As root, Chromium needs --no-sandbox; the others keep it off this machine's closed network
# (see docs/reports.md, "How the writers are tested").
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Run:
    """A run's report folder (``latest/``) and its record."""

    folder: Path
    record: RunResult

    @property
    def html(self) -> Path:
        return self.folder / "report.html"


def _variant(fault: str, name: str) -> Scenario:
    """The seed's planted-fault scenario with another fault, and no longer expected to fail."""
    path = SEED / "07_harness_catches_faults.yaml"
    text = (
        path.read_text(encoding="utf-8")
        .replace("plant_fault: duplicate_replay", f"plant_fault: {fault}")
        .replace("      must_fail: true\n", "")
        .replace("the harness catches a server that replays twice", name)
    )
    return load_text(text, str(path.relative_to(ROOT)))


def _seed_suite() -> list[tuple[Path, Scenario]]:
    """The seed suite, its files named as `harness run scenarios/seed` names them."""
    return [(path.relative_to(ROOT), scenario) for path, scenario in load_files([SEED])]


def _failing_suite() -> list[tuple[Path, Scenario]]:
    loaded = []
    for path, scenario in _seed_suite():
        if path.name == "05_windows.yaml":
            loaded.append((path, msgspec.structs.replace(scenario, plant_fault="never_expire")))
        elif path.name == "07_harness_catches_faults.yaml":
            loaded.append((path, _variant("duplicate_replay", "a replay is not doubled")))
            loaded.append((path, _variant("skip_replay", "a replay skips nothing")))
        else:
            loaded.append((path, scenario))
    return loaded


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """The seed suite as it is (``passing``) and with faults planted (``failing``), each written
    by ``write_all`` as a run writes it."""

    async def both() -> tuple[RunResult, RunResult]:
        async with Engine(RunOptions(jobs=2)) as engine:
            passing = await engine.run(_seed_suite(), suite="scenarios/seed")
            failing = await engine.run(_failing_suite(), suite="scenarios/seed, faults planted")
        return passing, failing

    # In a thread of its own: Playwright's sync API keeps an event loop in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        passing, failing = pool.submit(asyncio.run, both()).result()
    out = {}
    for name, record in (("passing", passing), ("failing", failing)):
        folder = tmp_path_factory.mktemp(name)
        write_all(record, folder, "run")
        out[name] = Run(folder / "latest", record)
    return out


MATRIX_FILES = (
    "scenarios/seed/01_basic_history.yaml",
    "scenarios/strength/01_replay_backlog.yaml",
    "scenarios/chaos/token_reuse_attack.yaml",
)
MATRIX_FAULTS = (
    "swap_replay",
    "reusable_token",
    "next_before_off_by_one",
    "rows_left_after_expiry",
)
"""Three faults these scenarios are written to catch, and one none of them can see (the rows an
expiry leaves in the store): the survivor."""


@dataclass
class MatrixRun:
    """What ``harness matrix`` wrote (``latest-matrix/``), and its exit code."""

    folder: Path
    code: int

    @property
    def html(self) -> Path:
        return self.folder / "matrix.html"


@pytest.fixture(scope="session")
def matrix_run(tmp_path_factory: pytest.TempPathFactory) -> MatrixRun:
    """A real, small ``harness matrix``: three scenarios, four faults, through the command
    line (embedded reference server, Toxiproxy), run from the repository's root."""
    reports = tmp_path_factory.mktemp("matrix")
    args = ["matrix", *MATRIX_FILES, "--jobs", "2", "--report-dir", str(reports)]
    for fault in MATRIX_FAULTS:
        args += ["--fault", fault]
    cwd = Path.cwd()
    os.chdir(ROOT)  # the record names the files as they were given, relative to the root
    try:
        # In a thread of its own: Playwright's sync API keeps an event loop in this one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            code = pool.submit(main, args).result()
    finally:
        os.chdir(cwd)
    return MatrixRun(reports / "latest-matrix", code)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Headless Debian Chromium with a fresh profile, or a skip that says how to install it.

    Per module, not per session: while Playwright's sync API is open it keeps an event loop
    running in this thread, which every asyncio test after it would trip over."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install it with {INSTALL}")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: scripts/setup installs it"
    )
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 900},
            device_scale_factor=1,
            offline=True,
        )
        try:
            yield context
        finally:
            context.close()


@dataclass
class Opened:
    """A page, and what it said and asked for while it was open."""

    page: Page
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, and requests beyond the file."""
        said = [f"{kind}: {text}" for kind, text in self.console if kind in ("error", "warning")]
        asked = [f"request: {url}" for url in self.requests if not url.startswith("file://")]
        return said + [f"pageerror: {e}" for e in self.errors] + asked


@pytest.fixture
def open_page(browser: BrowserContext) -> Iterator[Callable[..., Opened]]:
    """Open a file in a new page at a width; record its console, errors and requests."""
    pages: list[Page] = []

    def open_(path: Path, width: int = 1100, height: int = 900) -> Opened:
        page = browser.new_page()
        pages.append(page)
        page.set_viewport_size({"width": width, "height": height})
        opened = Opened(page)
        page.on("console", lambda m: opened.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: opened.errors.append(str(e)))
        page.on("request", lambda r: opened.requests.append(r.url))
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function("window.reportCharts !== undefined", timeout=10_000)
        return opened

    yield open_
    for page in pages:
        page.close()


def screenshot(target: Any, name: str, *, docs: bool = False, **options: Any) -> Path:
    """Save a screenshot of a page or element to reports/screenshots/ (and to docs/img/ when
    UPDATE_SCREENSHOTS=1 and it is one of the documented views)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    target.screenshot(path=str(path), **options)
    if docs and UPDATE_DOCS:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / f"{name}.png")
    return path
