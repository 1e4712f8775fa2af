"""An external target: a server someone else runs; the harness only connects to it.

Its credential comes from an environment variable named on the command line (never the token
itself). It cannot be restarted; its clock moves only when the driver offers a clock control
for it (the reference driver's admin channel, with an admin token from the environment), and
it counts as serving metrics only when ``/metrics`` answered before the run.
"""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

from harness.targets.base import TargetError, fetch_metrics

SETTLE_S = 0.05
"""How long to give an external server to notice a drop: it offers no gauge to watch."""


class ClockControl(Protocol):
    async def advance(self, seconds: float) -> None: ...


class ExternalTarget:
    """A server at a URL."""

    def __init__(
        self,
        url: str,
        token_env: str | None,
        *,
        clock: ClockControl | None = None,
        has_metrics: bool = False,
    ) -> None:
        self.url = url
        self.description = f"external target {url}"
        self._token = os.environ.get(token_env, "") if token_env else ""
        if token_env and not self._token:
            raise TargetError(f"environment variable {token_env} (the target's token) is not set")
        self._clock = clock
        self.capabilities = frozenset(
            ({"virtual_clock"} if clock is not None else set())
            | ({"metrics"} if has_metrics else set())
        )

    def credential_for(self, user: str) -> str:
        # One credential for every simulated client: an external target has its own users.
        return self._token

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
