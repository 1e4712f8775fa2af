"""The Socket.IO target: the Node host of ``targets/socketio/`` in a child process.

The host (``targets/socketio/host.js``) runs the real ``socket.io`` 4.8.4 server library,
installed by ``scripts/setup`` into ``.tools/socketio/node_modules`` from the pinned lockfile.
It listens on a free loopback port and states its URL on its first stdout line; its log goes
to a file in a temporary folder, named in every start error.

It has no virtual clock: Socket.IO reads the wall clock, so the windows are short instead
(``Windows``) and scenarios run on the real clock. A restart is SIGKILL and start on the same
port: the in-memory adapter holds the sessions and the packets, so a restart loses them all
(docs/servers.md). Its ``/metrics`` counts connected sockets, which is how ``settle`` knows the
server has noticed a drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from harness.checkers import metric_samples
from harness.targets.base import TargetError, fetch_metrics

ROOT: Final = Path(__file__).resolve().parents[2]
HOST: Final = ROOT / "targets" / "socketio" / "host.js"
MODULES: Final = ROOT / ".tools" / "socketio" / "node_modules"
VERSION: Final = "4.8.4"
READY_PREFIX: Final = "listening on "
_CONNECTED_METRIC: Final = "socketio_engine_clients"


@dataclass(frozen=True)
class Windows:
    """The host's time settings, short so that real-time scenarios take seconds."""

    max_disconnection_s: float = 5.0
    """``maxDisconnectionDuration``: how long sessions and packets are kept for recovery."""
    ping_interval_s: float = 1.0
    ping_timeout_s: float = 2.0
    skip_middlewares: bool = False
    """Socket.IO's default is ``true`` (a recovery runs no middleware, so no auth check); the
    harness checks auth on every resume (docs/servers.md)."""

    def args(self) -> list[str]:
        return [
            "--max-disconnection-ms",
            str(round(self.max_disconnection_s * 1000)),
            "--ping-interval-ms",
            str(round(self.ping_interval_s * 1000)),
            "--ping-timeout-ms",
            str(round(self.ping_timeout_s * 1000)),
            "--skip-middlewares",
            "true" if self.skip_middlewares else "false",
        ]


def mint(user: str, secret: str) -> str:
    """The host's credential for ``user``: ``USER.HEX``, HEX the HMAC-SHA256 of USER."""
    signature = hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()
    return f"{user}.{signature}"


def missing_install() -> str | None:
    """What is missing to run the host (None when node and socket.io are in place)."""
    if shutil.which("node") is None:
        return (
            "node is not installed: install Node.js 18 or newer (Debian: apt-get install nodejs "
            "npm), then run scripts/setup to install socket.io"
        )
    if not (MODULES / "socket.io" / "package.json").is_file():
        return f"socket.io is not installed in {MODULES}: run scripts/setup (it needs npm)"
    return None


class HostProcess:
    """The Node host as a child process: start (bounded), kill -9, restart on the same port."""

    def __init__(
        self, args: list[str], *, env: dict[str, str], log_path: Path, start_timeout: float = 15.0
    ) -> None:
        self.args = args
        self.env = {**os.environ, **env, "NODE_PATH": str(MODULES)}
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.port = 0
        self.url = ""
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        """Start the host (on its previous port, if it ran before) and return its URL."""
        why = missing_install()
        if why is not None:
            raise TargetError(f"the Socket.IO target cannot start: {why}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                "node",
                str(HOST),
                *self.args,
                "--port",
                str(self.port),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=self.env,
                start_new_session=True,  # Ctrl-C in the terminal reaches us, not the child
            )
        try:
            line = await asyncio.wait_for(self._ready_line(), self.start_timeout)
        except TimeoutError:
            why = f"no URL on its first line within {self.start_timeout:g} s"
        except TargetError as exc:
            why = str(exc)
        else:
            why = ""
        if why:
            await self.stop()
            raise TargetError(
                f"the Socket.IO host did not start: {why}; its log, {self.log_path}:\n"
                f"{self.log_tail()}"
            )
        self.url = line.removeprefix(READY_PREFIX).strip()
        self.port = int(self.url.split(":")[2].split("/", 1)[0])
        return self.url

    async def _ready_line(self) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        line = (await self.process.stdout.readline()).decode(errors="replace")
        if not line.startswith(READY_PREFIX):
            await self.process.wait()
            raise TargetError(f"first line {line!r}, exit code {self.process.returncode}")
        return line

    async def kill(self) -> None:
        """SIGKILL, as in a crash: the process keeps nothing."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await asyncio.wait_for(self.process.wait(), 10)

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``. Safe to call twice."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            await self.kill()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class SocketIOTarget:
    """The Node host of Socket.IO, started for one scenario."""

    capabilities: frozenset[str] = frozenset({"restart", "metrics"})

    def __init__(self, windows: Windows | None = None) -> None:
        self.windows = windows or Windows()
        self._workdir = Path(tempfile.mkdtemp(prefix="harness-socketio-"))
        self._secret = secrets.token_urlsafe(32)
        self.process = HostProcess(
            self.windows.args(),
            env={"SOCKETIO_HOST_SECRET": self._secret},
            log_path=self._workdir / "host.log",
        )
        self.url = ""
        self.description = f"embedded Socket.IO {VERSION} host"
        self._keep_log = False

    async def start(self) -> None:
        try:
            self.url = await self.process.start()
        except TargetError:
            self._keep_log = True  # the error names the log: leave it for the reader
            raise
        w = self.windows
        self.description = (
            f"embedded Socket.IO {VERSION} host at {self.url} (in-memory adapter, real clock, "
            f"maxDisconnectionDuration {w.max_disconnection_s:g} s, ping {w.ping_interval_s:g} s"
            f" / {w.ping_timeout_s:g} s, skipMiddlewares {str(w.skip_middlewares).lower()})"
        )

    def credential_for(self, user: str) -> str:
        return mint(user, self._secret)

    async def advance_clock(self, seconds: float) -> None:
        raise TargetError("the Socket.IO target has no virtual clock (Socket.IO reads the wall's)")

    async def restart(self) -> None:
        await self.process.kill()
        try:
            await self.process.start()
        except TargetError:
            self._keep_log = True
            raise

    async def metrics(self) -> str | None:
        return await fetch_metrics(self.url)

    async def settle(self, connected: int, timeout: float) -> None:
        """Poll the host's count of Engine.IO clients until it is no more than ``connected``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = await self.metrics()
            value = metric_samples(text).get(_CONNECTED_METRIC) if text else None
            if value is None or value <= connected:
                return
            await asyncio.sleep(0.01)

    def log_tail(self) -> str:
        return self.process.log_tail()

    async def stop(self) -> None:
        await self.process.stop()
        if not self._keep_log:
            shutil.rmtree(self._workdir, ignore_errors=True)
