"""What the harness asks of a target besides its protocol: start, clock, restart, metrics.

A target is the server under test. It declares its capabilities (``TARGET_CAPABILITIES``) so
that the planner can skip, before a scenario starts, what the target cannot do; the drivers'
capabilities are declared beside theirs (``harness.driver.base.CAPABILITIES``).
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import httpx

from harness.errors import HarnessInfrastructureError

TARGET_CAPABILITIES: Final[dict[str, str]] = {
    "restart": "the harness can kill the target and start it again on its store",
    "virtual_clock": "the harness can move the target's clock forward",
    "metrics": "the target serves Prometheus metrics at /metrics",
    "embedded": "the target is the embedded reference server (planted faults, server options)",
    "inspect_store": "the harness can read how many rows the target's store holds for a session",
    "nodes": "the target is a cluster: the harness picks a node, kills one, breaks its store link",
}


class TargetError(HarnessInfrastructureError):
    """The target could not be started or reached."""


class Target(Protocol):
    """A server under test."""

    description: str
    url: str
    capabilities: frozenset[str]

    def credential_for(self, user: str) -> str:
        """The credential a simulated client logs in with as ``user``."""
        ...

    async def start(self) -> None: ...

    async def advance_clock(self, seconds: float) -> None: ...

    async def restart(self) -> None: ...

    async def metrics(self) -> str | None:
        """The target's Prometheus text, or None if it serves none."""
        ...

    async def settle(self, connected: int, timeout: float) -> None:
        """Wait (at most ``timeout``) until the target has noticed dropped connections, so
        that a gap starts where the scenario says; ``connected`` clients are still live."""
        ...

    async def stop(self) -> None: ...


@runtime_checkable
class InspectsStore(Protocol):
    """A target whose store the harness can read from outside (``inspect_store``)."""

    async def stored_rows(self, session: str) -> dict[str, int]:
        """How many rows each part of the store holds for ``session``."""
        ...


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


def upstream(url: str) -> str:
    """host:port of a ws(s) URL, with the scheme's default port when it names none."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    return f"{parts.hostname}:{port}"
