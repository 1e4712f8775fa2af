"""Find, start and stop a real Toxiproxy server.

The harness starts its own Toxiproxy on a free loopback port unless it is given the URL of one
(``TOXIPROXY_URL``). Things this module respects about Toxiproxy (see docs/toxiproxy.md):

- there is no health endpoint, so readiness is a successful ``GET /version``;
- the API is bound to ``127.0.0.1``, never ``localhost`` (which may resolve to ``::1``);
- the control API can hang, so every HTTP call has a timeout;
- in v2.12.0 a failure to bind the API port does not end the process: it logs
  "Server finished with error" and keeps running. So a launch is only taken as ours once the
  request id of our ``GET /version`` shows up in our process's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import httpx

from harness.errors import ToxiproxyNotFoundError, ToxiproxyStartError

TOXIPROXY_VERSION: Final = "2.12.0"
"""The pinned Toxiproxy version; ``scripts/setup`` installs the same one."""

TOXIPROXY_MODULE: Final = "github.com/Shopify/toxiproxy/v2"
BINARY_NAME: Final = "toxiproxy-server"
TOOLS_RELATIVE_PATH: Final = Path(".tools") / "bin" / BINARY_NAME
LOOPBACK: Final = "127.0.0.1"

ENV_SERVER: Final = "TOXIPROXY_SERVER"
ENV_URL: Final = "TOXIPROXY_URL"

PACKAGE_DIR: Path = Path(__file__).resolve().parent
"""Where the repository-root search starts when the working directory has no tools folder."""

LAUNCH_ATTEMPTS: Final = 3
_POLL_INTERVAL: Final = 0.05
_LOG_TAIL_LINES: Final = 30
_REQUEST_ID_HEADER: Final = "X-Toxiproxy-Request-Id"
_BIND_FAILURE_MARKERS: Final = ("Server finished with error", "address already in use")


def install_instructions() -> str:
    """Return the text that tells a person how to get the pinned Toxiproxy server."""
    v = TOXIPROXY_VERSION
    return (
        f"Toxiproxy server {v} ({BINARY_NAME}) was not found. Any one of these fixes it:\n"
        f"  - run scripts/setup: it runs go install of {TOXIPROXY_MODULE}/cmd/server@v{v}\n"
        f"    and puts the binary at {TOOLS_RELATIVE_PATH};\n"
        f"  - by hand: go install {TOXIPROXY_MODULE}/cmd/server@v{v}, then rename the\n"
        f"    binary it builds ('server', in $(go env GOPATH)/bin) to {BINARY_NAME}\n"
        f"    and put it on PATH or in {TOOLS_RELATIVE_PATH} (add\n"
        f'    -ldflags "-X {TOXIPROXY_MODULE}.Version={v}" so that it reports its version);\n'
        f"  - download a release binary from the Toxiproxy GitHub releases (Shopify/toxiproxy)\n"
        f"    and set {ENV_SERVER}=/path/to/{BINARY_NAME};\n"
        f"  - use a package manager (Homebrew: brew install toxiproxy) so {BINARY_NAME} is on\n"
        f"    PATH;\n"
        f"  - run the container image ghcr.io/shopify/toxiproxy:{v} and set\n"
        f"    {ENV_URL}=http://127.0.0.1:8474 so the harness uses it instead of starting one;\n"
        f"  - or set {ENV_SERVER} to the path of a {BINARY_NAME} binary you already have."
    )


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _tools_binary_under(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        candidate = directory / TOOLS_RELATIVE_PATH
        if _is_executable_file(candidate):
            return candidate
    return None


def find_toxiproxy_server(
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    package_dir: Path | None = None,
) -> Path:
    """Return the path of the Toxiproxy server binary to run.

    Looks, in order, at ``TOXIPROXY_SERVER``; at ``.tools/bin/toxiproxy-server`` in the first
    ancestor of the working directory (then of this package's directory) that has one; at
    ``toxiproxy-server`` on PATH. Raises ``ToxiproxyNotFoundError`` with install instructions
    when there is none, or when ``TOXIPROXY_SERVER`` names something that is not an executable
    file.
    """
    env = os.environ if environ is None else environ
    configured = env.get(ENV_SERVER)
    if configured:
        path = Path(configured).expanduser()
        if not path.exists():
            raise ToxiproxyNotFoundError(
                f"{ENV_SERVER} is set to {configured!r}, which does not exist.\n\n"
                + install_instructions()
            )
        if not _is_executable_file(path):
            raise ToxiproxyNotFoundError(
                f"{ENV_SERVER} is set to {configured!r}, which is not an executable file.\n\n"
                + install_instructions()
            )
        return path.resolve()

    for start in (cwd or Path.cwd(), package_dir or PACKAGE_DIR):
        found = _tools_binary_under(start.resolve())
        if found is not None:
            return found

    on_path = shutil.which(BINARY_NAME, path=env.get("PATH"))
    if on_path is not None:
        return Path(on_path).resolve()

    raise ToxiproxyNotFoundError(install_instructions())


def _free_loopback_port() -> int:
    # Bind port 0 and read back what the OS chose. Another process may take the port before
    # Toxiproxy binds it; the launch loop detects that and retries on a new port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _log_tail(path: Path | None) -> str:
    if path is None:
        return "(no log)"
    lines = _read_text(path).splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else "(log is empty)"


def _parse_version(response: httpx.Response) -> str:
    # v2.12.0 answers {"version": "2.12.0"}; older servers answered with plain text.
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("version"), str):
            return str(body["version"])
    return response.text.strip()


def _kill_and_reap(process: subprocess.Popen[bytes]) -> None:
    """Synchronous last resort: SIGKILL and reap. Safe on an already finished process."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


async def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, wait at most ``grace`` seconds, then SIGKILL; always reaps the process."""
    try:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            deadline = time.monotonic() + grace
            # Popen offers nothing to await; poll its exit with short sleeps, bounded.
            while True:
                if process.poll() is not None or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(_POLL_INTERVAL)
    finally:
        # Also runs when the wait above is cancelled: never leave the process behind.
        _kill_and_reap(process)


class _Outcome(enum.Enum):
    READY = "ready"
    EXITED = "exited early"
    PORT_TAKEN = "could not bind its port"
    NOT_OURS = "the port answered, but not from the process we started"
    TIMEOUT = "did not answer in time"


@dataclass(frozen=True)
class _Attempt:
    outcome: _Outcome
    version: str = ""


class ToxiproxyServer:
    """A Toxiproxy server for the duration of an ``async with`` block.

    With a ``url`` (or ``TOXIPROXY_URL`` in the environment) it uses that server and starts
    nothing. Otherwise it launches the binary from ``find_toxiproxy_server()`` on a free port of
    127.0.0.1, waits until ``GET /version`` answers, and stops the process on exit, also when
    startup fails.

    The server's output goes to a log file in a new temporary folder (under ``log_dir`` when
    given), removed on a clean stop unless ``keep_log``, kept after a failed start.

    Attributes once started: ``url`` (base URL of the control API), ``version`` (what
    ``/version`` reported), ``binary``, ``pid`` and ``log_path`` (None when nothing was
    launched; ``pid`` and ``log_path`` stay set after stop for error messages).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        binary: Path | None = None,
        startup_timeout: float = 10.0,
        request_timeout: float = 2.0,
        stop_timeout: float = 5.0,
        keep_log: bool = False,
        log_dir: Path | None = None,
    ) -> None:
        self._external_url = (url or os.environ.get(ENV_URL) or "").rstrip("/") or None
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._request_timeout = request_timeout
        self._stop_timeout = stop_timeout
        self._keep_log = keep_log
        self._log_parent = log_dir

        self._url: str | None = None
        self._version: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], ToxiproxyServer] | None = None
        self._log_dir: Path | None = None
        self.pid: int | None = None
        self.log_path: Path | None = None

    # -- public attributes ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the control API, e.g. ``http://127.0.0.1:40123``."""
        if self._url is None:
            raise RuntimeError("ToxiproxyServer is not started")
        return self._url

    @property
    def version(self) -> str:
        """The version the server reported on ``GET /version``."""
        if self._version is None:
            raise RuntimeError("ToxiproxyServer is not started")
        return self._version

    @property
    def binary(self) -> Path | None:
        """The binary that was (or will be) launched; None when using an external server."""
        return self._binary

    @property
    def is_external(self) -> bool:
        """True when this object uses a server it did not start."""
        return self._external_url is not None

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> Self:
        """Start (or connect to) the server and wait until it answers ``GET /version``."""
        if self._url is not None:
            raise RuntimeError("ToxiproxyServer is already started")
        try:
            if self._external_url is not None:
                await self._connect_external(self._external_url)
            else:
                await self._launch()
        except BaseException:
            # Keep the log of a failed start: the error message points at it.
            await self._shutdown(keep_log=True)
            raise
        return self

    async def stop(self) -> None:
        """Stop the process this object launched, if any. Safe to call more than once."""
        await self._shutdown(keep_log=self._keep_log)

    # -- internals --------------------------------------------------------------------------

    async def _shutdown(self, *, keep_log: bool) -> None:
        process, self._process = self._process, None
        self._url = None
        if process is not None:
            await _terminate(process, self._stop_timeout)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log_dir is not None and not keep_log:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    def _client(self) -> httpx.AsyncClient:
        # trust_env=False: never route loopback control calls through an HTTP proxy from the
        # environment. Every phase has an explicit timeout.
        return httpx.AsyncClient(timeout=httpx.Timeout(self._request_timeout), trust_env=False)

    async def _get_version(self, client: httpx.AsyncClient, url: str) -> httpx.Response | None:
        """One bounded ``GET /version``; None when the server did not answer 200 in time."""
        try:
            async with asyncio.timeout(self._request_timeout):
                response = await client.get(f"{url}/version")
        except (httpx.TransportError, TimeoutError):
            return None
        return response if response.status_code == 200 else None

    async def _connect_external(self, url: str) -> None:
        deadline = time.monotonic() + self._startup_timeout
        async with self._client() as client:
            while True:
                response = await self._get_version(client, url)
                if response is not None:
                    self._url, self._version = url, _parse_version(response)
                    return
                if time.monotonic() >= deadline:
                    raise ToxiproxyStartError(
                        f"The Toxiproxy server at {url} (from the url argument or {ENV_URL}) "
                        f"did not answer GET /version within {self._startup_timeout:g} s."
                    )
                await asyncio.sleep(_POLL_INTERVAL)

    async def _launch(self) -> None:
        if self._binary is None:
            self._binary = find_toxiproxy_server()
        self._log_dir = Path(tempfile.mkdtemp(prefix="harness-toxiproxy-", dir=self._log_parent))
        deadline = time.monotonic() + self._startup_timeout
        failures: list[str] = []
        async with self._client() as client:
            for attempt in range(1, LAUNCH_ATTEMPTS + 1):
                port = _free_loopback_port()
                url = f"http://{LOOPBACK}:{port}"
                self._spawn(port, self._log_dir / f"toxiproxy-{attempt}.log")
                result = await self._await_ready(client, url, deadline)
                if result.outcome is _Outcome.READY:
                    self._url, self._version = url, result.version
                    return
                failures.append(f"attempt {attempt} on port {port}: {result.outcome.value}")
                if self._process is not None:
                    process, self._process = self._process, None
                    await _terminate(process, self._stop_timeout)
                if result.outcome is _Outcome.TIMEOUT or time.monotonic() >= deadline:
                    break
        raise ToxiproxyStartError(
            f"Toxiproxy server {self._binary} did not start within "
            f"{self._startup_timeout:g} s ({'; '.join(failures)}).\n"
            f"Log: {self.log_path}\n--- last lines of the log ---\n{_log_tail(self.log_path)}"
        )

    def _spawn(self, port: int, log_path: Path) -> None:
        assert self._binary is not None
        # LOG_LEVEL is dropped so that the access log (debug level) is written: the readiness
        # check looks for its own request id there.
        env = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
        self.log_path = log_path
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(self._binary), "-host", LOOPBACK, "-port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self._process = process
        self.pid = process.pid
        if self._finalizer is not None:
            self._finalizer.detach()
        # Safety net if the object is dropped or the interpreter exits without stop().
        self._finalizer = weakref.finalize(self, _kill_and_reap, process)

    async def _await_ready(self, client: httpx.AsyncClient, url: str, deadline: float) -> _Attempt:
        process, log_path = self._process, self.log_path
        assert process is not None
        assert log_path is not None
        request_id: str | None = None
        version = ""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return _Attempt(_Outcome.EXITED)
            log = _read_text(log_path)
            if any(marker in log for marker in _BIND_FAILURE_MARKERS):
                return _Attempt(_Outcome.PORT_TAKEN)
            if request_id is None:
                response = await self._get_version(client, url)
                if response is not None:
                    version = _parse_version(response)
                    request_id = response.headers.get(_REQUEST_ID_HEADER)
                    if not request_id:
                        # A server without request ids: alive and no bind error is all we
                        # can check.
                        return _Attempt(_Outcome.READY, version)
                    continue
            elif request_id in log:
                return _Attempt(_Outcome.READY, version)
            await asyncio.sleep(_POLL_INTERVAL)
        return _Attempt(_Outcome.NOT_OURS if request_id else _Outcome.TIMEOUT)
