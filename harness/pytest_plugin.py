"""The ``ws_continuity`` pytest plugin: YAML scenarios as pytest tests, and fixtures.

Registered through the ``pytest11`` entry point, so installing this package is enough. It does
two things (docs/ci.md, "pytest"):

- ``pytest scenarios/seed`` collects each scenario file as one test item. The item runs the
  scenario with ``harness.suite.run_scenario`` and passes, fails or skips as the scenario does.
  One Toxiproxy serves the whole session: it starts when the first scenario runs (collecting
  starts nothing) and stops when the session ends. A failure names the step, what was expected,
  what was seen and the evidence.
- Fixtures for hand-written tests: ``reference_server``, ``toxiproxy``, ``toxiproxy_proxy`` and
  ``protocol_client``.

Which YAML files are scenarios (the collection rule): a ``*.yaml`` or ``*.yml`` file whose top
level has a ``name:`` and a ``steps:`` key (each at the start of a line), and that is

- named on the command line itself (``pytest my_scenario.yaml``), or
- inside a directory named on the command line (``pytest scenarios/seed``) that is not one of
  the ini ``testpaths`` nor inside one (so ``pytest`` and ``pytest tests/`` leave the YAML under
  ``tests/`` alone: there it is test data), or
- anywhere pytest looks, when ``--scenarios`` is given.

Importing this module is cheap: the harness, the reference server, Toxiproxy's client and the
event loop are imported when a scenario or a fixture first needs them.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import asyncio

    from pytest_asyncio import fixture as _async_fixture

    from harness.engine import Engine, RunOptions
    from harness.faults.toxiproxy_client import Proxy, ToxiproxyClient
    from harness.faults.toxiproxy_server import ToxiproxyServer
    from harness.results import ScenarioResult
    from harness.scenario import Scenario
    from reference_server.aio_client import AsyncClient
    from reference_server.app import ReferenceServer
else:
    try:
        from pytest_asyncio import fixture as _async_fixture
    except ImportError:  # pytest-asyncio is a dev dependency; without it, pytest itself
        _async_fixture = pytest.fixture  # reports that the async fixtures need a plugin.

__all__ = ["ProxiedURL", "ScenarioFile", "ScenarioItem", "ScenarioSession"]

_SUFFIXES = (".yaml", ".yml")
_TOP_NAME = re.compile(r"^name[ \t]*:", re.MULTILINE)
_TOP_STEPS = re.compile(r"^steps[ \t]*:", re.MULTILINE)
_GLOB_CHARS = frozenset("*?[")
_OWN_PACKAGES = frozenset({"harness", "reference_server"})


# --- options -------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's command-line options (``pytest --help``, group ws-continuity)."""
    group = parser.getgroup("ws-continuity", "WebSocket session-continuity scenarios")
    group.addoption(
        "--scenarios",
        action="store_true",
        default=False,
        help="collect scenario YAML files wherever pytest looks, testpaths included "
        "(by default only under paths named on the command line, outside testpaths)",
    )
    group.addoption(
        "--ws-target",
        metavar="URL",
        help="run the scenarios against this ws(s):// server instead of the embedded one",
    )
    group.addoption(
        "--ws-token-env",
        metavar="NAME",
        help="environment variable holding the --ws-target's token (never the token itself)",
    )
    group.addoption(
        "--ws-admin-token-env",
        metavar="NAME",
        help="environment variable holding the --ws-target's admin token (its virtual clock)",
    )
    group.addoption(
        "--ws-report-dir",
        metavar="DIR",
        help="at the end, write results.json, report.md, junit.xml and report.html of the "
        "scenarios that ran to DIR/<timestamp>/ and DIR/latest/",
    )
    group.addoption(
        "--ws-driver",
        metavar="NAME",
        default="reference",
        help="the driver that speaks the target's protocol (default: reference)",
    )
    group.addoption(
        "--ws-clock",
        choices=["virtual", "real", "auto"],
        help="override every scenario's clock",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Leave the asserts of this distribution's own packages alone.

    pytest marks every module of a distribution that provides a ``pytest11`` plugin for
    assertion rewriting (meant for a plugin's helpers). Here that would be the whole harness
    and reference server: production code, whose namespaces would gain pytest's
    ``@py_builtins`` names. This runs before any conftest or test module is imported. pytest
    has no public API to unmark a package, so its private set is changed only if it is there.
    """
    hook = early_config.pluginmanager.rewrite_hook
    marked = getattr(hook, "_must_rewrite", None)
    if isinstance(marked, set):
        marked.difference_update(_OWN_PACKAGES)
        cache = getattr(hook, "_marked_for_rewrite_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def pytest_configure(config: pytest.Config) -> None:
    """Check the options and keep the session's state on the config."""
    target = config.getoption("ws_target")
    if target and not str(target).startswith(("ws://", "wss://")):
        raise pytest.UsageError("--ws-target must be a ws:// or wss:// URL")
    config.stash[_STATE] = _State(config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop Toxiproxy and write the reports of the scenarios that ran."""
    state = session.config.stash.get(_STATE, None)
    if state is not None:
        state.finish()


def pytest_unconfigure(config: pytest.Config) -> None:
    """A safety net: stop Toxiproxy even when the session did not finish normally."""
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say where the reports went."""
    state = config.stash.get(_STATE, None)
    if state is not None and state.report_folder is not None:
        terminalreporter.write_line(f"ws-continuity report: {state.report_folder / 'report.md'}")


# --- collection ----------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    """Collect a scenario YAML file, following the rule in this module's docstring."""
    if file_path.suffix not in _SUFFIXES:
        return None
    state = parent.config.stash.get(_STATE, None)
    if state is None or not state.wanted(file_path) or not looks_like_scenario(file_path):
        return None
    file: ScenarioFile = ScenarioFile.from_parent(parent, path=file_path)
    return file


def looks_like_scenario(path: Path) -> bool:
    """Does the file's top level have both ``name:`` and ``steps:`` keys?"""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(_TOP_NAME.search(text) and _TOP_STEPS.search(text))


class ScenarioFile(pytest.File):
    """A scenario YAML file: one test item, named after the scenario."""

    def collect(self) -> Iterator[ScenarioItem]:
        from harness.scenario import ScenarioError, load

        shown = _shown_path(self.path, self.config)
        try:
            scenario = load(shown)
        except ScenarioError as error:
            # An invalid file is still one item, which fails with the loader's problems, so
            # that one broken file does not stop the collection of the others.
            yield ScenarioItem.from_parent(
                self, name=self.path.stem, scenario=None, problem=str(error)
            )
            return
        yield ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario, problem="")


class ScenarioItem(pytest.Item):
    """One scenario run as one test; ``-k`` also matches the scenario's tags."""

    def __init__(self, *, scenario: Scenario | None, problem: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.problem = problem
        self.result: ScenarioResult | None = None
        if scenario is not None:
            self.extra_keyword_matches.update(scenario.tags)

    def runtest(self) -> None:
        if self.scenario is None:
            raise ScenarioInvalidError(self.problem)
        state = self.config.stash[_STATE]
        result = state.runner.run(_shown_path(self.path, self.config), self.scenario)
        self.result = result
        if result.clock:
            self.user_properties.append(("clock", result.clock))
        self.user_properties.append(("virtual_seconds", f"{result.virtual_seconds:g}"))
        if result.status == "skipped":
            _skip(result.error or "skipped by the harness")
        if result.status in ("failed", "error"):
            raise ScenarioFailedError(result)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> Any:
        if isinstance(excinfo.value, ScenarioFailedError | ScenarioInvalidError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, f"scenario: {self.name}"


def _skip(reason: str) -> None:
    """Skip the running item, reported at the scenario file rather than at this plugin."""
    try:
        exc = pytest.skip.Exception(reason, _use_item_location=True)
    except TypeError:  # a pytest without item locations for skips
        exc = pytest.skip.Exception(reason)
    raise exc


class ScenarioInvalidError(Exception):
    """The scenario file did not load; the message lists its problems."""


class ScenarioFailedError(Exception):
    """The scenario failed or errored; the message says where, what and why."""

    def __init__(self, result: ScenarioResult) -> None:
        super().__init__(describe_failure(result))
        self.result = result


def describe_failure(result: ScenarioResult) -> str:
    """A scenario's failure: the step, expected, seen, evidence; then the scenario's steps.

    The first line (pytest's short summary) names the step and what went wrong.
    """
    step = result.first_failure
    lines: list[str] = []
    if step is not None:
        lines.append(f"step {step.path} ({step.kind}) {step.status}: {step.message}")
        if step.expected or step.seen:
            lines.append(f"  expected: {step.expected}")
            lines.append(f"  seen:     {step.seen}")
        if step.evidence:
            lines.append(f"  evidence: {_pairs(step.evidence)}")
        for verdict in step.verdicts:
            if not verdict.passed:
                evidence = f" ({_pairs(verdict.evidence)})" if verdict.evidence else ""
                lines.append(f"  check {verdict.check} failed: {verdict.message}{evidence}")
    if result.error:
        lines.append(f"{result.status}: {result.error}")
    lines.append(f"scenario `{result.name}` ({result.file}): {result.status.upper()}")
    if result.target:
        lines.append(f"target: {result.target}; clock: {result.clock or 'none'}")
    if result.steps:
        lines.append("steps:")
        for s in result.steps:
            lines.append(f"  {s.path:>6} {s.kind:<16} {s.status:<8} {s.message}".rstrip())
    return "\n".join(lines)


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in values.items())


def _shown_path(path: Path, config: pytest.Config) -> Path:
    """The path as reports show it: relative to where pytest was started, when inside it."""
    try:
        return path.relative_to(config.invocation_params.dir)
    except ValueError:
        return path


# --- the session: options, collection roots, one Toxiproxy, the results -------------------


class _State:
    """What the plugin keeps for one pytest session."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.everywhere = bool(config.getoption("scenarios"))
        self.files, self.folders = _command_line_roots(config)
        report_dir = config.getoption("ws_report_dir")
        self.report_dir = config.invocation_params.dir / report_dir if report_dir else None
        self.report_folder: Path | None = None
        self._runner: ScenarioSession | None = None

    def wanted(self, path: Path) -> bool:
        """Is this YAML file in a place where the rule looks for scenarios?"""
        if self.everywhere:
            return True
        path = path.resolve()
        return path in self.files or any(f == path or f in path.parents for f in self.folders)

    @property
    def runner(self) -> ScenarioSession:
        if self._runner is None:
            from harness.engine import RunOptions

            options = RunOptions(
                target_url=self.config.getoption("ws_target"),
                token_env=self.config.getoption("ws_token_env"),
                admin_token_env=self.config.getoption("ws_admin_token_env"),
                clock=self.config.getoption("ws_clock"),
                driver=self.config.getoption("ws_driver"),
            )
            self._runner = ScenarioSession(options)
        return self._runner

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()

    def finish(self) -> None:
        """Stop Toxiproxy; with ``--ws-report-dir``, write the reports of what ran."""
        if self._runner is None:
            return
        environment = self._runner.environment()
        self._runner.close()
        if self.report_dir is None or not self._runner.results:
            return
        from harness.report import write_all
        from harness.results import RunResult

        started = self._runner.started or dt.datetime.now(dt.UTC)
        record = RunResult(
            started=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            seconds=round(self._runner.seconds, 6),
            suite=" ".join(str(a) for a in self.config.args),
            environment=environment,
            scenarios=list(self._runner.results),
        )
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        self.report_folder = write_all(record, self.report_dir, stamp)


def _command_line_roots(config: pytest.Config) -> tuple[set[Path], list[Path]]:
    """Files and folders named on the command line; folders in or under testpaths are left out."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return set(), []
    here = config.invocation_params.dir
    testpaths = _testpaths(config)
    files: set[Path] = set()
    folders: list[Path] = []
    for arg in config.args:
        path = (here / str(arg).split("::", 1)[0]).resolve()
        if path.is_file():
            files.add(path)
        elif path.is_dir() and not any(t == path or t in path.parents for t in testpaths):
            folders.append(path)
    return files, folders


def _testpaths(config: pytest.Config) -> list[Path]:
    root = config.rootpath
    found: list[Path] = []
    for pattern in config.getini("testpaths"):
        if _GLOB_CHARS & set(pattern):
            found.extend(p.resolve() for p in root.glob(pattern))
        else:
            found.append((root / pattern).resolve())
    return found


class ScenarioSession:
    """Runs scenarios one at a time through the run engine, with one Toxiproxy for all.

    The loop is an ``asyncio.Runner`` kept for the whole session and used only while a
    scenario runs (or the engine starts or stops), so it never competes with the loops of
    pytest-asyncio. The engine (and its Toxiproxy) starts on first use; a failure to start is
    remembered, and every later scenario errors with the same message instead of trying again.
    """

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.results: list[ScenarioResult] = []
        self.started: dt.datetime | None = None
        self._clock_start = 0.0
        self._loop: asyncio.Runner | None = None
        self._engine: Engine | None = None
        self._startup_error = ""
        self._closed = False

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._clock_start if self.started else 0.0

    def _runner(self) -> asyncio.Runner:
        if self._closed:
            raise RuntimeError("the scenario session is closed")
        if self._loop is None:
            import asyncio

            self._loop = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        return self._loop

    def engine(self) -> Engine:
        """The session's engine, started on first use (``TOXIPROXY_URL`` is respected)."""
        from harness.engine import Engine
        from harness.errors import HarnessInfrastructureError

        if self._engine is not None:
            return self._engine
        if self._startup_error:
            raise HarnessInfrastructureError(self._startup_error)
        engine = Engine(self.options)
        try:
            self._runner().run(engine.__aenter__())
        except HarnessInfrastructureError as exc:
            self._startup_error = str(exc)
            raise
        self._engine = engine
        return engine

    def toxiproxy(self) -> ToxiproxyServer:
        """The session's Toxiproxy, started on first use."""
        return self.engine().toxiproxy

    def run(self, path: Path, scenario: Scenario) -> ScenarioResult:
        """Run one scenario and keep its result for the session's reports."""
        from harness.errors import HarnessInfrastructureError
        from harness.results import ScenarioResult

        if self.started is None:
            self.started = dt.datetime.now(dt.UTC)
            self._clock_start = time.perf_counter()
        try:
            engine = self.engine()
        except HarnessInfrastructureError as exc:
            result = ScenarioResult(
                name=scenario.name,
                file=str(path),
                status="error",
                error=f"infrastructure: {exc}",
                infrastructure=True,
            )
        else:
            result = self._runner().run(engine.run_scenario(path, scenario))
        self.results.append(result)
        return result

    def environment(self) -> dict[str, str]:
        """What the reports say about where the scenarios ran (as ``harness run`` does)."""
        if self._engine is not None:
            return dict(self._engine.environment)
        return {"toxiproxy": "not started", "target": self.options.target_url or "embedded"}

    def close(self) -> None:
        """Stop the engine and close the loop; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            engine, self._engine = self._engine, None
            if engine is not None:
                loop.run(engine.__aexit__(None, None, None))
        finally:
            loop.close()


_STATE = pytest.StashKey[_State]()


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def toxiproxy(pytestconfig: pytest.Config) -> ToxiproxyServer:
    """The session's running Toxiproxy server (the one the YAML scenarios use too).

    It is started on first use and stopped at the end of the session; with ``TOXIPROXY_URL``
    set, that server is used and none is started.
    """
    return pytestconfig.stash[_STATE].runner.toxiproxy()


@_async_fixture
async def reference_server(request: pytest.FixtureRequest) -> AsyncIterator[ReferenceServer]:
    """A running in-process reference server: virtual clock, memory store, loopback port.

    ``reference_server.clock.advance(seconds)`` moves its time. Indirect parametrization
    overrides ``ServerConfig`` fields: ``@pytest.mark.parametrize("reference_server",
    [{"store": "sqlite:/tmp/s.db"}], indirect=True)``.
    """
    from reference_server.app import ReferenceServer
    from reference_server.config import ServerConfig

    settings: dict[str, Any] = {
        "virtual_clock": True,
        "store": "memory",
        "auth_secret": secrets.token_urlsafe(32),
        "admin_token": secrets.token_urlsafe(16),
        "trusted_proxies": ("127.0.0.1/32",),
    }
    settings.update(getattr(request, "param", None) or {})
    async with ReferenceServer(ServerConfig(**settings)) as server:
        yield server


class ProxiedURL(str):
    """The ``ws://`` URL of a Toxiproxy proxy in front of the reference server.

    It is the URL string; ``proxy`` is the proxy as Toxiproxy reports it (its ``name``) and
    ``api`` a ``ToxiproxyClient`` for adding toxics to it (``api.add_toxic(proxy.name, ...)``,
    ``api.set_enabled(proxy.name, False)``).
    """

    proxy: Proxy
    api: ToxiproxyClient

    def __new__(cls, url: str, proxy: Proxy, api: ToxiproxyClient) -> ProxiedURL:
        self = super().__new__(cls, url)
        self.proxy = proxy
        self.api = api
        return self


@_async_fixture
async def toxiproxy_proxy(
    toxiproxy: ToxiproxyServer, reference_server: ReferenceServer
) -> AsyncIterator[ProxiedURL]:
    """A proxy of the session's Toxiproxy in front of ``reference_server``; yields its ws URL.

    The proxy is deleted after the test, with every toxic on it.
    """
    from harness.faults.toxiproxy_client import ToxiproxyClient

    config = reference_server.config
    async with ToxiproxyClient(toxiproxy.url) as api:
        name = f"pytest-{secrets.token_hex(4)}"
        proxy = await api.create_proxy(name, f"{config.host}:{reference_server.port}")
        try:
            yield ProxiedURL(f"ws://{proxy.listen}{config.path}", proxy, api)
        finally:
            await api.delete_proxy(name)


ClientFactory = Callable[..., "AsyncClient"]
"""``protocol_client(user="alice", *, url=None, **client_options) -> AsyncClient``."""


@_async_fixture
async def protocol_client(reference_server: ReferenceServer) -> AsyncIterator[ClientFactory]:
    """A factory of protocol clients of ``reference_server``, each with a valid token.

    ``protocol_client("bob")`` returns an ``AsyncClient`` for user ``bob`` aimed at the server
    (or at ``url=``, such as ``toxiproxy_proxy``); ``await client.connect()`` opens its
    session. Other keyword arguments go to ``AsyncClient``. Every client is dropped after the
    test.
    """
    from reference_server import auth
    from reference_server.aio_client import AsyncClient

    made: list[AsyncClient] = []

    def make(user: str = "alice", *, url: str | None = None, **options: Any) -> AsyncClient:
        token = auth.mint(user, reference_server.config.auth_secret)
        client = AsyncClient(url or reference_server.url, token, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.drop()
