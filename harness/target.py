"""Targets: the server a run drives, and what it can do besides speaking its protocol.

The embedded target is the reference server, started by the harness as a child process on a
free loopback port (SQLite store in a temporary folder, virtual clock when the scenario wants
one) and stopped after: it can be restarted and its clock advanced. An external target is any
URL: its credential comes from an environment variable named on the command line, and what it
cannot do (restart, clock control) makes the steps that need it SKIPPED, never passed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from harness.errors import HarnessInfrastructureError
from reference_server import admin, auth
from reference_server.launcher import ServerProcess, ServerStartError


class TargetError(HarnessInfrastructureError):
    """The target could not be started or reached."""


class Target(Protocol):
    """A server under test."""

    description: str
    url: str
    can_restart: bool
    can_control_clock: bool

    def token_for(self, user: str) -> str: ...

    async def advance_clock(self, seconds: float) -> None: ...

    async def restart(self) -> None: ...

    async def metrics(self) -> str | None: ...

    async def stop(self) -> None: ...


def http_base(url: str) -> str:
    """The http(s) origin of a ws(s) URL."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


async def fetch_metrics(url: str) -> str | None:
    """GET /metrics of the target's origin, or None if it has none."""
    try:
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            response = await http.get(http_base(url) + "/metrics")
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


class EmbeddedTarget:
    """The reference server in a child process, owned by one scenario run."""

    can_restart = True

    def __init__(self, *, virtual_clock: bool, extra_args: tuple[str, ...] = ()) -> None:
        self.can_control_clock = virtual_clock
        self._workdir = Path(tempfile.mkdtemp(prefix="harness-target-"))
        self._secret = secrets.token_urlsafe(32)
        self._admin = secrets.token_urlsafe(16)
        args = ["--store", f"sqlite:{self._workdir / 'sessions.db'}", *extra_args]
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

    async def start(self) -> None:
        try:
            self.url = await self.process.start()
        except ServerStartError as exc:
            raise TargetError(str(exc)) from None
        clock = "virtual clock" if self.can_control_clock else "real clock"
        self.description = f"embedded reference server at {self.url} (SQLite store, {clock})"

    def token_for(self, user: str) -> str:
        return auth.mint(user, self._secret, ttl_s=24 * 3600)

    async def advance_clock(self, seconds: float) -> None:
        await admin.advance_clock(self.url, self._admin, seconds)
        self._advanced += seconds

    async def restart(self) -> None:
        try:
            await self.process.restart(hard=True)
        except ServerStartError as exc:
            raise TargetError(str(exc)) from None
        if self._advanced:
            # A new process starts its virtual clock at the wall clock: put it back where the
            # old one was, or stored sessions would see time run backwards across the restart.
            await admin.advance_clock(self.url, self._admin, self._advanced)

    async def metrics(self) -> str | None:
        return await fetch_metrics(self.url)

    def log_tail(self) -> str:
        return self.process.log_tail()

    async def stop(self) -> None:
        await self.process.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)


class ExternalTarget:
    """A server someone else runs; the harness only connects to it."""

    can_restart = False

    def __init__(self, url: str, token_env: str | None, admin_token_env: str | None = None) -> None:
        self.url = url
        self.description = f"external target {url}"
        self._token = os.environ.get(token_env, "") if token_env else ""
        if token_env and not self._token:
            raise TargetError(f"environment variable {token_env} (the target's token) is not set")
        self._admin = os.environ.get(admin_token_env, "") if admin_token_env else ""
        self.can_control_clock = bool(self._admin)

    def token_for(self, user: str) -> str:
        # One credential for every simulated client: an external target has its own users.
        return self._token

    async def advance_clock(self, seconds: float) -> None:
        await admin.advance_clock(self.url, self._admin, seconds)

    async def restart(self) -> None:
        raise TargetError("an external target cannot be restarted by the harness")

    async def metrics(self) -> str | None:
        return await fetch_metrics(self.url)

    async def stop(self) -> None:
        return None
