"""An external target: a server someone else runs; the harness only connects to it.

Its credential comes from an environment variable named on the command line (never the token
itself). It cannot be restarted; its clock moves only when the driver offers a clock control
for it (the reference driver's admin channel, with an admin token from the environment), and
it counts as serving metrics only when ``/metrics`` answered before the run.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
from typing import Protocol

from harness.targets.base import TargetError, fetch_metrics

SETTLE_S = 0.05
"""How long to give an external server to notice a drop: it offers no gauge to watch."""


class ClockControl(Protocol):
    async def advance(self, seconds: float) -> None: ...


CREDENTIAL_COMMAND_TIMEOUT_S = 10.0


def parse_credential(text: str) -> tuple[str, str]:
    """``USER=env:NAME`` or ``USER=cmd:COMMAND`` (``*`` for every other user) as (user,
    source); ``ValueError`` with the expected form otherwise. The token itself is never given
    on the command line: only where to find it."""
    user, sep, source = text.partition("=")
    if not sep or not user or not source.startswith(("env:", "cmd:")) or len(source) < 5:
        raise ValueError(
            f"--credential {text!r}: write USER=env:VARIABLE or USER=cmd:COMMAND (the command "
            "prints the token; {user} in it is replaced by the user's name)"
        )
    return user, source


class Credentials:
    """Where each simulated user's credential comes from."""

    def __init__(self, sources: dict[str, str], default_env: str | None = None) -> None:
        self.sources = dict(sources)
        if default_env and "*" not in self.sources:
            self.sources["*"] = f"env:{default_env}"

    def check(self) -> None:
        """Fail now, before any scenario, for an environment variable that is not set."""
        for user, source in self.sources.items():
            if source.startswith("env:") and not os.environ.get(source[4:]):
                raise TargetError(
                    f"environment variable {source[4:]} (the credential of "
                    f"{'every user' if user == '*' else user}) is not set"
                )

    def __call__(self, user: str) -> str:
        source = self.sources.get(user) or self.sources.get("*")
        if source is None:
            return ""
        kind, _, value = source.partition(":")
        if kind == "env":
            token = os.environ.get(value, "")
            if not token:
                raise TargetError(
                    f"environment variable {value} (the credential of {user}) is not set"
                )
            return token
        command = [part.replace("{user}", user) for part in shlex.split(value)]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=CREDENTIAL_COMMAND_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TargetError(f"the credential command for {user} did not run: {exc}") from None
        token = done.stdout.strip()
        if done.returncode != 0 or not token:
            # Its stderr may say why; its stdout (a token, perhaps) is never repeated.
            raise TargetError(
                f"the credential command for {user} exited {done.returncode} "
                f"{'with no output' if not token else ''}: {done.stderr.strip()[:200]}"
            )
        return token


class ExternalTarget:
    """A server at a URL."""

    def __init__(
        self,
        url: str,
        token_env: str | None,
        *,
        clock: ClockControl | None = None,
        has_metrics: bool = False,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.description = f"external target {url}"
        self._credentials = Credentials(credentials or {}, token_env)
        self._credentials.check()
        self._clock = clock
        self.capabilities = frozenset(
            ({"virtual_clock"} if clock is not None else set())
            | ({"metrics"} if has_metrics else set())
        )

    def credential_for(self, user: str) -> str:
        """The user's own credential (``--credential``), or the one of ``--token-env``."""
        return self._credentials(user)

    async def start(self) -> None:
        return None

    async def advance_clock(self, seconds: float) -> None:
        if self._clock is None:
            raise TargetError("this target offers no clock control")
        await self._clock.advance(seconds)

    async def restart(self) -> None:
        raise TargetError("an external target cannot be restarted by the harness")

    async def metrics(self) -> str | None:
        return await fetch_metrics(self.url)

    async def settle(self, connected: int, timeout: float) -> None:
        await asyncio.sleep(min(SETTLE_S, timeout))

    async def stop(self) -> None:
        return None


async def probe_metrics(url: str) -> bool:
    """Whether the target serves metrics (asked once, before the run)."""
    return await fetch_metrics(url) is not None
