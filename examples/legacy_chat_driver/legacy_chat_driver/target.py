"""The embedded legacy chat server: examples/legacy_chat/server.py as a child process.

One process per scenario, on a free port of 127.0.0.1; its first stdout line is its URL, and
its log goes to a file in a temporary folder that every start error names (the folder is then
kept). It can be restarted (SIGKILL, then started again on the same port: the users' state
lived in the process, so it is gone), and that is all: the server has no clock the harness
could move, no metrics, no store to inspect.

The server's path is ``LEGACY_CHAT_SERVER`` if set, else the example next to this package in
the repository (``examples/legacy_chat/server.py``); it runs under this Python.
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
import sys
import tempfile
from pathlib import Path
from typing import Final

from harness.targets.base import TargetError

SERVER_ENV: Final = "LEGACY_CHAT_SERVER"
BESIDE: Final = Path(__file__).resolve().parents[2] / "legacy_chat" / "server.py"
START_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 5.0
SETTLE_S: Final = 0.05
"""How long to give the server to notice a drop: it offers nothing to watch."""


def server_path() -> Path:
    return Path(os.environ.get(SERVER_ENV) or BESIDE)


def mint(user: str, secret: str) -> str:
    """The server's token for ``user``: ``USER.HEX``, HEX the HMAC-SHA256 of USER."""
    return f"{user}.{hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()}"


class LegacyChatTarget:
    """The example server, started for one scenario."""

    capabilities: frozenset[str] = frozenset({"restart"})

    def __init__(self, *, start_timeout: float = START_TIMEOUT_S) -> None:
        self.start_timeout = start_timeout
        self.url = ""
        self.description = "embedded legacy chat server (examples/legacy_chat)"
        self.port = 0
        self._secret = secrets.token_urlsafe(32)
        self._workdir = Path(tempfile.mkdtemp(prefix="harness-legacy-chat-"))
        self.log_path = self._workdir / "server.log"
        self._process: asyncio.subprocess.Process | None = None
        self._keep_log = False

    def credential_for(self, user: str) -> str:
        return mint(user, self._secret)

    async def start(self) -> None:
        """Start the server (on its previous port, after a restart) and read its URL."""
        path = server_path()
        if not path.is_file():
            self._keep_log = True
            raise TargetError(
                f"the legacy chat server is not at {path}: set {SERVER_ENV} to the path of "
                "examples/legacy_chat/server.py"
            )
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(path),
                "--port",
                str(self.port),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env={**os.environ, "LEGACY_CHAT_SECRET": self._secret},
                start_new_session=True,  # Ctrl-C in the terminal reaches the harness only
            )
        try:
            line = await asyncio.wait_for(self._first_line(), self.start_timeout)
        except TimeoutError:
            line = ""
        if not line.startswith("ws://"):
            self._keep_log = True  # the error names the log: leave it for the reader
            await self.stop()
            raise TargetError(
                f"the legacy chat server did not start (first line {line!r} within "
                f"{self.start_timeout:g} s); its log, {self.log_path}:\n{self.log_tail()}"
            )
        self.url = line.strip()
        self.port = int(self.url.split(":")[2].split("/", 1)[0])
        self.description = (
            f"embedded legacy chat server at {self.url} (examples/legacy_chat: in-memory state, "
            "no sequence numbers, no replay)"
        )

    async def _first_line(self) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        return (await self._process.stdout.readline()).decode(errors="replace")

    async def advance_clock(self, seconds: float) -> None:
        raise TargetError("the legacy chat server has no virtual clock")

    async def restart(self) -> None:
        """SIGKILL, as in a crash, then start again on the same port."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        await self.start()

    async def metrics(self) -> str | None:
        return None

    async def settle(self, connected: int, timeout: float) -> None:
        await asyncio.sleep(min(SETTLE_S, timeout))

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after a bound. Safe to call twice."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        if not self._keep_log:
            shutil.rmtree(self._workdir, ignore_errors=True)
