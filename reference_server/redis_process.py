"""Run a real ``redis-server`` as a child process, for tests and the harness's cluster target.

It listens on a free loopback port, keeps its files in a folder of its own (a temporary one
unless given), persists with the append-only file (``appendonly yes``, ``appendfsync
everysec``) and no RDB snapshots, and can be SIGKILLed and started again on the same port and
files. The binary is ``$REDIS_SERVER`` or ``redis-server`` on the PATH (Debian's package
``redis-server``, version 7; scripts/setup installs it as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REDIS_SERVER_ENV = "REDIS_SERVER"
INSTALL_HINT = (
    "redis-server 7 is needed: as root on Debian or Ubuntu, apt-get install redis-server "
    "(scripts/setup does it); on macOS, brew install redis; or set REDIS_SERVER to the path of "
    "a redis-server binary"
)


class RedisUnavailableError(RuntimeError):
    """No redis-server binary, or it did not start."""


def redis_binary() -> str | None:
    """The redis-server to run, or None."""
    configured = os.environ.get(REDIS_SERVER_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("redis-server")


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisProcess:
    """``with RedisProcess() as redis: redis.url`` (or ``start()`` / ``stop()``)."""

    def __init__(self, directory: Path | None = None, *, start_timeout: float = 10.0) -> None:
        binary = redis_binary()
        if binary is None:
            raise RedisUnavailableError(INSTALL_HINT)
        self.binary = binary
        self._own_dir = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="redis-"))
        self.port = free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        """The store spec of database 0: ``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def __enter__(self) -> RedisProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def start(self) -> str:
        """Start it (on the same port and files as before, if it ran); wait until it answers."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("redis-server already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--daemonize", "no",
                "--logfile", str(self.log_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._answers():
                return self.url
            time.sleep(0.02)
        self.stop()
        raise RedisUnavailableError(f"redis-server did not start:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: Redis gets no chance to write anything more."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> str:
        """SIGKILL, then start again on the same port and append-only file."""
        self.kill()
        self.restarts += 1
        return self.start()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s. Safe to call twice."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
