"""The fault layer of one scenario: its own Toxiproxy proxy in front of the target.

How each `drop` and `fault` step maps to Toxiproxy is the table in docs/toxiproxy.md
("Scenario steps in Toxiproxy"); keep the two in step.

Toxicity and stream pass through. Toxiproxy ignores ``-seed``, so which connections a toxic
with toxicity < 1 hit is recorded in the history, not assumed.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from harness.faults.toxiproxy_client import Stream, ToxiproxyClient
from harness.history import History

_HALF_OPEN = ("half-open-up", "half-open-down")


def _ms(seconds: float | None) -> int:
    return round((seconds or 0.0) * 1000)


def toxic_attributes(kind: str, fault: Any) -> dict[str, int | float]:
    """Toxiproxy attributes for a scenario ``fault`` step (durations in seconds there)."""
    if kind == "latency":
        return {"latency": _ms(fault.latency), "jitter": _ms(fault.jitter)}
    if kind == "bandwidth":
        return {"rate": int(fault.rate_kbps)}
    if kind == "slow_close":
        return {"delay": _ms(fault.delay)}
    if kind in ("timeout", "reset_peer"):
        return {"timeout": _ms(fault.timeout)}
    if kind == "slicer":
        return {
            "average_size": int(fault.average_size),
            "size_variation": int(fault.size_variation or 0),
            "delay": round((fault.slice_delay or 0.0) * 1_000_000),
        }
    if kind == "limit_data":
        return {"bytes": int(fault.bytes)}
    raise ValueError(f"unknown toxic {kind!r}")


class FaultLayer:
    """One proxy, created for one scenario and removed after it."""

    def __init__(self, api: ToxiproxyClient, history: History, label: str) -> None:
        self.api = api
        self.history = history
        slug = "".join(c if c.isalnum() else "-" for c in label.lower())[:40].strip("-")
        self.name = f"{slug or 'scenario'}-{secrets.token_hex(3)}"
        self.port = 0
        self.toxics: list[str] = []
        self._names = itertools.count(1)

    async def start(self, upstream: str) -> None:
        """Create the proxy in front of ``upstream`` (host:port) on a free loopback port."""
        proxy = await self.api.create_proxy(self.name, upstream)
        self.port = proxy.port
        self.history.event("fault", "proxy_created", listen=proxy.listen, upstream=upstream)

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect to reach the target through this proxy. Clients keep the
        target's own URL (its Host header, TLS server name and path) and only open their TCP
        connection here, so ``wss://`` targets work through the proxy too."""
        return ("127.0.0.1", self.port)

    async def down(self) -> None:
        await self.api.set_enabled(self.name, False)
        self.history.event("fault", "proxy_down")

    async def up(self) -> None:
        await self.api.set_enabled(self.name, True)
        self.history.event("fault", "proxy_up")

    async def half_open(self) -> None:
        streams: tuple[Stream, Stream] = ("upstream", "downstream")
        for name, stream in zip(_HALF_OPEN, streams, strict=True):
            await self.api.add_toxic(self.name, name, "timeout", {"timeout": 0}, stream=stream)
            self.toxics.append(name)
        self.history.event("fault", "half_open")

    async def add(
        self, kind: str, attributes: dict[str, int | float], *, stream: Stream, toxicity: float
    ) -> str:
        name = f"{kind}-{next(self._names)}"
        await self.api.add_toxic(
            self.name, name, kind, attributes, stream=stream, toxicity=toxicity
        )
        self.toxics.append(name)
        self.history.event(
            "fault",
            "toxic_added",
            toxic=name,
            type=kind,
            stream=stream,
            toxicity=toxicity,
            attributes=attributes,
        )
        return name

    async def remove(self, name: str) -> None:
        if name in self.toxics:
            await self.api.remove_toxic(self.name, name)
            self.toxics.remove(name)
            self.history.event("fault", "toxic_removed", toxic=name)

    async def heal(self) -> None:
        """Remove every toxic and enable the proxy."""
        for name in list(self.toxics):
            await self.remove(name)
        await self.api.set_enabled(self.name, True)
        self.history.event("fault", "healed")

    async def close(self) -> None:
        await self.api.delete_proxy(self.name)
        self.history.event("fault", "proxy_deleted")
