"""The embedded target: the reference server in a child process, owned by one scenario.

Everything the harness knows about the reference server as a process lives here: its
options, its planted faults (test-only broken rules, to prove checks catch them), its admin
channel for the virtual clock, and its ``ws_connections`` metric, which says when it has
noticed a drop. It runs on a free loopback port with a SQLite store in a temporary folder.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Final

from harness.checkers import metric_samples
from harness.targets.base import TargetError, fetch_metrics
from reference_server import admin, auth, faults
from reference_server.launcher import ServerProcess, ServerStartError
from reference_server.store import sqlite

PLANTED_FAULTS: Final = faults.PLANTED_FAULTS
"""The rules the reference server can be started with broken (``--plant-fault``)."""
describe_fault: Final = faults.describe
"""What one of them breaks, in words."""

_CONNECTIONS_METRIC: Final = "ws_connections"


class EmbeddedTarget:
    """The reference server in a child process."""

    def __init__(
        self,
        *,
        virtual_clock: bool,
        plant_fault: str | None = None,
        server_args: tuple[str, ...] = (),
    ) -> None:
        self.capabilities = self.capabilities_for(virtual_clock=virtual_clock)
        self._workdir = Path(tempfile.mkdtemp(prefix="harness-target-"))
        self._secret = secrets.token_urlsafe(32)
        self._admin = secrets.token_urlsafe(16)
        # Clients come through Toxiproxy on loopback: trust it to forward X-Forwarded-For.
        args = [
            "--store",
            f"sqlite:{self._workdir / 'sessions.db'}",
            "--trusted-proxy",
            "127.0.0.1/32",
            *server_args,
        ]
        if plant_fault is not None:
            args += ["--plant-fault", plant_fault]
        if virtual_clock:
            args.append("--virtual-clock")
        self.process = ServerProcess(
            args,
            env={
                "REFERENCE_SERVER_AUTH_SECRET": self._secret,
                "REFERENCE_SERVER_ADMIN_TOKEN": self._admin,
            },
            log_path=self._workdir / "server.log",
        )
        self.url = ""
        self.description = "embedded reference server"
        self._advanced = 0.0

    @staticmethod
    def capabilities_for(*, virtual_clock: bool) -> frozenset[str]:
        """What an embedded target started with (or without) the virtual clock can do."""
        clock = {"virtual_clock"} if virtual_clock else set()
        return frozenset({"restart", "metrics", "embedded", "inspect_store"} | clock)

    async def start(self) -> None:
        try:
            self.url = await self.process.start()
        except ServerStartError as exc:
            raise TargetError(str(exc)) from None
        clock = "virtual clock" if "virtual_clock" in self.capabilities else "real clock"
        self.description = f"embedded reference server at {self.url} (SQLite store, {clock})"

    def credential_for(self, user: str) -> str:
        return auth.mint(user, self._secret, ttl_s=24 * 3600)

    async def advance_clock(self, seconds: float) -> None:
        await admin.advance_clock(self.url, self._admin, seconds)
        self._advanced += seconds

    async def restart(self) -> None:
        if self._advanced:
            # The new process starts its virtual clock where the old one was: it restores the
            # sessions it finds at that time (an attached one as detached now), so neither
            # time running backwards nor the waits before the restart count as a gap.
            self.process.args = [
                *_without_clock_offset(self.process.args),
                "--clock-offset",
                repr(self._advanced),
            ]
        try:
            await self.process.restart(hard=True)
        except ServerStartError as exc:
            raise TargetError(str(exc)) from None

    async def metrics(self) -> str | None:
        return await fetch_metrics(self.url)

    async def settle(self, connected: int, timeout: float) -> None:
        """Poll the server's connection gauge until it counts no more than ``connected``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = await self.metrics()
            value = metric_samples(text).get(_CONNECTIONS_METRIC) if text else None
            if value is None or value <= connected:
                return
            await asyncio.sleep(0.01)

    async def stored_rows(self, session: str) -> dict[str, int]:
        """The rows the server's SQLite file holds for ``session``, read as they are on disk."""
        return await asyncio.to_thread(sqlite.rows_of, self._workdir / "sessions.db", session)

    def log_tail(self) -> str:
        return self.process.log_tail()

    async def stop(self) -> None:
        await self.process.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)


def _without_clock_offset(args: list[str]) -> list[str]:
    """``args`` without a ``--clock-offset SECONDS`` pair an earlier restart put there."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--clock-offset":
            skip = True
        else:
            kept.append(arg)
    return kept
