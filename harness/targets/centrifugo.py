"""The Centrifugo target: a real Centrifugo server in a child process, owned by one scenario.

Centrifugo (https://centrifugal.dev) is a Go server installed by ``scripts/setup
--with-centrifugo`` (``go install`` of the pinned module into ``.tools/bin``). Each scenario
gets its own process on a free loopback port, with the configuration shipped in
``centrifugo_config.json`` next to this module, completed per run with a fresh HMAC secret
(for the clients' HS256 JWTs) and a fresh HTTP API key; nothing secret is committed.

The shipped bounds are short so that real-time scenarios take seconds (docs/servers.md):
history of 15 publications kept 4 s after the channel's last publication, stream meta
(offset and epoch) kept 10 s, at most 10 publications recovered, a ping every 3 s answered
within 2 s. The memory engine keeps history in the process: a restart (SIGKILL, then a new
process on the same port) loses every stream and gives each channel a new epoch.

Centrifugo has no virtual clock: its scenarios run on the real clock. Its Prometheus
endpoint is on, so the target serves ``metrics``; its live
``centrifugo_client_connections_inflight`` gauge says when it has noticed a drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Final

import httpx
import jwt

from harness.targets.base import TargetError, fetch_metrics

CENTRIFUGO_VERSION: Final = "6.9.1"
"""The pinned Centrifugo version; ``scripts/setup --with-centrifugo`` installs the same one."""
CENTRIFUGO_MODULE: Final = "github.com/centrifugal/centrifugo/v6"
BINARY_NAME: Final = "centrifugo"
ENV_BINARY: Final = "CENTRIFUGO_BINARY"
TOOLS_RELATIVE_PATH: Final = Path(".tools") / "bin" / BINARY_NAME
CONFIG_RESOURCE: Final = "centrifugo_config.json"
LOOPBACK: Final = "127.0.0.1"
WEBSOCKET_PATH: Final = "/connection/websocket"
CONNECTIONS_METRIC: Final = "centrifugo_client_connections_inflight"
"""A live gauge (``centrifugo_node_num_clients`` is refreshed only every 10 s)."""

START_TIMEOUT_S: Final = 15.0
"""How long a start may take until ``/health`` answers 200."""
TOKEN_TTL_S: Final = 24 * 3600
SETTLE_POLL_S: Final = 0.02

PACKAGE_DIR: Path = Path(__file__).resolve().parent


def install_instructions() -> str:
    """How to get the pinned Centrifugo binary."""
    v = CENTRIFUGO_VERSION
    return (
        f"Centrifugo {v} ({BINARY_NAME}) was not found. Any one of these fixes it:\n"
        f"  - run scripts/setup --with-centrifugo: it runs go install of {CENTRIFUGO_MODULE}"
        f"@v{v}\n    (about 2 min and 0.9 GB of Go modules, cold) into {TOOLS_RELATIVE_PATH};\n"
        f"  - or set {ENV_BINARY}=/path/to/centrifugo (a release binary of version {v})."
    )


def find_centrifugo(
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    package_dir: Path | None = None,
) -> Path:
    """The Centrifugo binary: ``CENTRIFUGO_BINARY``, else ``.tools/bin/centrifugo`` in the
    first ancestor of the working directory (then of this package) that has one, else
    ``centrifugo`` on PATH. ``TargetError`` with install instructions when there is none."""
    env = os.environ if environ is None else environ
    configured = env.get(ENV_BINARY)
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise TargetError(
                f"{ENV_BINARY} is set to {configured!r}, which is not an executable file.\n\n"
                + install_instructions()
            )
        return path.resolve()
    for start in (cwd or Path.cwd(), package_dir or PACKAGE_DIR):
        for directory in (start.resolve(), *start.resolve().parents):
            candidate = directory / TOOLS_RELATIVE_PATH
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    on_path = shutil.which(BINARY_NAME, path=env.get("PATH"))
    if on_path is not None:
        return Path(on_path).resolve()
    raise TargetError(install_instructions())


@functools.lru_cache(maxsize=8)
def binary_version(binary: Path) -> str:
    """What ``centrifugo version`` says (``6.9.1``), or ``unknown``."""
    try:
        out = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    # "Centrifugo v6.9.1 (Go version: go1.26.8)"
    words = out.split()
    return words[1].removeprefix("v") if len(words) > 1 else "unknown"


def shipped_config() -> dict[str, Any]:
    """The configuration shipped with the harness, without its per-run secrets."""
    text = resources.files("harness.targets").joinpath(CONFIG_RESOURCE).read_text()
    config: dict[str, Any] = json.loads(text)
    return config


def run_config(port: int, *, hmac_secret: str, api_key: str) -> dict[str, Any]:
    """The shipped configuration for one run: loopback, ``port``, this run's secrets."""
    config = copy.deepcopy(shipped_config())
    config["http_server"] = {"address": LOOPBACK, "port": port}
    config["client"]["token"]["hmac_secret_key"] = hmac_secret
    config["http_api"]["key"] = api_key
    config["usage_stats"] = {"disabled": True}
    return config


def connections(metrics_text: str) -> float | None:
    """The live connections a Prometheus text counts (every label set of the gauge summed);
    None when it has no such gauge."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith(CONNECTIONS_METRIC + "{") or line.startswith(CONNECTIONS_METRIC + " ")
    ]
    return sum(values) if values else None


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class CentrifugoTarget:
    """One Centrifugo process (memory engine) for one scenario."""

    capabilities: frozenset[str] = frozenset({"restart", "metrics"})

    def __init__(self, *, binary: Path | None = None, start_timeout: float = START_TIMEOUT_S):
        self.binary = binary or find_centrifugo()
        self.version = binary_version(self.binary)
        self.start_timeout = start_timeout
        self._workdir = Path(tempfile.mkdtemp(prefix="harness-centrifugo-"))
        self.log_path = self._workdir / "centrifugo.log"
        self.config_path = self._workdir / "config.json"
        self._secret = secrets.token_urlsafe(32)
        self.api_key = secrets.token_urlsafe(24)
        self.port = 0
        self.url = ""
        self.description = f"embedded Centrifugo {self.version}"
        self._process: asyncio.subprocess.Process | None = None
        self._keep_log = False
        self.restarts = 0
        self._gauge_lock = asyncio.Lock()
        self._gauge: tuple[float, float | None] = (-1e9, None)

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start on a free loopback port (the same one on a restart); wait for ``/health``."""
        if self.port == 0:
            self.port = _free_loopback_port()
        config = run_config(self.port, hmac_secret=self._secret, api_key=self.api_key)
        self.config_path.write_text(json.dumps(config, indent=2))
        with self.log_path.open("ab") as log:
            try:
                self._process = await asyncio.create_subprocess_exec(
                    str(self.binary),
                    "-c",
                    str(self.config_path),
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    cwd=self._workdir,
                    start_new_session=True,  # Ctrl-C in the terminal reaches us, not the child
                )
            except OSError as exc:
                raise self._start_error(f"could not run {self.binary}: {exc}") from None
        try:
            await self._wait_healthy()
        except TargetError:
            await self._kill()
            raise
        self.url = f"ws://{LOOPBACK}:{self.port}{WEBSOCKET_PATH}"
        self.description = (
            f"embedded Centrifugo {self.version} at {self.url} (memory engine, real clock)"
        )

    async def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self._process.returncode is not None:
                    raise self._start_error(f"exited with code {self._process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(f"{self.http_url}/health")
                    if response.status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise self._start_error(f"/health did not answer 200 within {self.start_timeout:g} s")

    def _start_error(self, why: str) -> TargetError:
        self._keep_log = True  # the message points at the log: leave it there
        return TargetError(
            f"Centrifugo did not start on {LOOPBACK}:{self.port}: {why}; "
            f"its log is {self.log_path}:\n{self.log_tail()}"
        )

    async def restart(self) -> None:
        """SIGKILL, as in a crash, then start again on the same port (the memory engine
        starts with no history: every channel gets a new epoch)."""
        await self._kill()
        self.restarts += 1
        await self.start()

    async def _kill(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.wait_for(process.wait(), 10)

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; remove the run's folder (unless a
        failed start left its log there to read). Safe to call twice."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                await self._kill()
        if not self._keep_log:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    # --- what the runner asks of a target ------------------------------------------------

    def credential_for(self, user: str) -> str:
        """An HS256 connection JWT for ``user`` (claims ``sub`` and ``exp``)."""
        claims = {"sub": user, "exp": int(time.time()) + TOKEN_TTL_S}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    async def advance_clock(self, seconds: float) -> None:
        raise TargetError("Centrifugo has no virtual clock: its scenarios run on the real one")

    async def metrics(self) -> str | None:
        return await fetch_metrics(self.url)

    async def settle(self, connected: int, timeout: float) -> None:
        """Poll the server's connection gauge until it counts no more than ``connected``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self._connections()
            if value is None or value <= connected:
                return
            await asyncio.sleep(SETTLE_POLL_S)

    async def _connections(self) -> float | None:
        """The gauge, read at most once per poll interval however many clients settle at once
        (a herd of clients each reading /metrics would starve the event loop)."""
        async with self._gauge_lock:
            read_at, value = self._gauge
            if time.monotonic() - read_at >= SETTLE_POLL_S:
                text = await self.metrics()
                value = connections(text) if text else None
                self._gauge = (time.monotonic(), value)
            return value

    async def api(self, method: str, params: Mapping[str, Any], timeout: float = 5.0) -> Any:
        """Call the server HTTP API (``POST /api/<method>`` with this run's key): the
        ``result`` of the answer; ``TargetError`` on an error answer."""
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as http:
            response = await http.post(
                f"{self.http_url}/api/{method}",
                json=dict(params),
                headers={"X-API-Key": self.api_key},
            )
        body = response.json()
        if response.status_code != 200 or "error" in body:
            raise TargetError(f"Centrifugo API {method}: {response.status_code} {body}")
        return body.get("result", {})
