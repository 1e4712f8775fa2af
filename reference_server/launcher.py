"""Run the reference server as a child process: start, read its URL, kill -9, restart, stop.

The harness uses this for its embedded target and for ``server_restart`` drops; tests use it
for durability. The child's first stdout line states its URL (see ``__main__``); every wait
here is bounded and the child never outlives the context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

READY_PREFIX = "listening on "


class ServerStartError(RuntimeError):
    """The server process exited or stayed silent instead of stating its URL."""


class ServerProcess:
    """``async with ServerProcess(args) as server: server.url``.

    ``args`` are ``python -m reference_server`` options; ``--port`` is managed here so that a
    restart comes back on the same port.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        env: dict[str, str] | None = None,
        start_timeout: float = 15.0,
        log_path: Path | None = None,
        module: str = "reference_server",
        cwd: Path | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        """``module`` is run with ``python -m``; any server that takes ``--port`` and states
        ``listening on URL`` first (the benchmarks' echo server does) can be launched.
        ``prefix`` goes before the interpreter (a tool that runs it, e.g. valgrind)."""
        self.module = module
        self.prefix = list(prefix)
        self.cwd = cwd
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.start_timeout = start_timeout
        # A log folder made here is removed on exit; a caller's log_path is the caller's.
        self._own_log_dir = None if log_path else Path(tempfile.mkdtemp(prefix="server-"))
        self.log_path = log_path or Path(str(self._own_log_dir)) / "server.log"
        self.url = ""
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0

    async def __aenter__(self) -> ServerProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self._own_log_dir is not None:
            shutil.rmtree(self._own_log_dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def start(self) -> str:
        """Start the server (on the same port as before, if it ran before); return its URL."""
        if self.process is not None and self.process.returncode is None:
            raise RuntimeError("server already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.prefix,
                sys.executable,
                "-m",
                self.module,
                *self.args,
                "--port",
                str(self.port),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # Ctrl-C in the terminal reaches us, not the child
            )
        finally:
            log.close()
        try:
            line = await asyncio.wait_for(self._ready_line(), self.start_timeout)
        except (TimeoutError, ServerStartError) as exc:
            await self.stop()
            raise ServerStartError(
                f"reference server did not start: {exc}\n{self.log_tail()}"
            ) from None
        self.url = line.removeprefix(READY_PREFIX).strip()
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        return self.url

    async def _ready_line(self) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        raw = await self.process.stdout.readline()
        line = raw.decode(errors="replace")
        if not line.startswith(READY_PREFIX):
            raise ServerStartError(f"first line was {line!r} (exit code {self.process.returncode})")
        return line

    async def kill(self) -> None:
        """SIGKILL: the server gets no chance to clean up, as in a crash."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), 10)

    async def restart(self, *, hard: bool = True) -> str:
        """Kill (SIGKILL by default, else SIGTERM) and start again on the same port."""
        if hard:
            await self.kill()
        else:
            await self.stop()
        self.restarts += 1
        return await self.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Safe to call twice."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.wait_for(process.wait(), timeout)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server logged, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
