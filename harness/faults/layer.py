"""The fault layer of one scenario: its own Toxiproxy proxy in front of the target.

How each `drop` and `fault` step maps to Toxiproxy is the table in docs/toxiproxy.md
("Scenario steps in Toxiproxy"); keep the two in step.

Toxicity and stream pass through. Toxiproxy ignores ``-seed``, so which connections a toxic
with toxicity < 1 hit is recorded in the history, not assumed.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable
from typing import Any

from harness.errors import HarnessInfrastructureError
from harness.faults.toxiproxy_client import Stream, ToxiproxyClient
from harness.history import Done, Failure, FaultAction, History

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
    """One proxy, created for one scenario and removed after it.

    Every action is recorded in the scenario's history (process ``fault``) as an invocation
    and its completion, so a report's fault timeline and a checker see the same record."""

    def __init__(self, api: ToxiproxyClient, history: History, label: str) -> None:
        self.api = api
        self.history = history
        slug = "".join(c if c.isalnum() else "-" for c in label.lower())[:40].strip("-")
        self.name = f"{slug or 'scenario'}-{secrets.token_hex(3)}"
        self.port = 0
        self.toxics: list[str] = []
        self._names = itertools.count(1)
        self._enabled = True
        # Many clients of one scenario may take the proxy down (or up) at once, as the herd of
        # a `parallel` step does: one call reaches Toxiproxy, the others find it done. Two
        # hundred concurrent calls queue in the API client's pool and in Toxiproxy's lock for
        # longer than their timeout, and the watchdog's probe waits behind them.
        self._switching = asyncio.Lock()

    async def _do(self, action: FaultAction, call: Awaitable[Any]) -> Any:
        op = self.history.invoke("fault", action)
        try:
            result = await call
        except HarnessInfrastructureError as exc:
            self.history.complete(op, "fail", Failure(error=str(exc), infrastructure=True))
            raise
        except BaseException:
            self.history.complete(op, "info", Failure(error="interrupted"))
            raise
        self.history.complete(op, "ok", Done())
        return result

    async def start(self, upstream: str) -> None:
        """Create the proxy in front of ``upstream`` (host:port) on a free loopback port."""
        action = FaultAction(action="create", upstream=upstream)
        proxy = await self._do(action, self.api.create_proxy(self.name, upstream))
        self.port = proxy.port

    async def healthy(self, timeout: float) -> bool:
        """Whether Toxiproxy answers its control API within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self.api.version()
        except (TimeoutError, HarnessInfrastructureError):
            return False
        return True

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect to reach the target through this proxy. Clients keep the
        target's own URL (its Host header, TLS server name and path) and only open their TCP
        connection here, so ``wss://`` targets work through the proxy too."""
        return ("127.0.0.1", self.port)

    async def down(self) -> None:
        await self._switch(enabled=False)

    async def up(self) -> None:
        await self._switch(enabled=True)

    async def _switch(self, *, enabled: bool) -> None:
        """Enable or disable the proxy; recorded every time, sent only when it changes."""
        action = FaultAction(action="up" if enabled else "down")
        async with self._switching:
            if self._enabled is enabled:
                await self._do(action, asyncio.sleep(0))
                return
            await self._do(action, self.api.set_enabled(self.name, enabled))
            self._enabled = enabled

    async def half_open(self) -> None:
        streams: tuple[Stream, Stream] = ("upstream", "downstream")

        async def both() -> None:
            for name, stream in zip(_HALF_OPEN, streams, strict=True):
                await self.api.add_toxic(self.name, name, "timeout", {"timeout": 0}, stream=stream)
                self.toxics.append(name)

        await self._do(FaultAction(action="half_open"), both())

    async def add(
        self, kind: str, attributes: dict[str, int | float], *, stream: Stream, toxicity: float
    ) -> str:
        name = f"{kind}-{next(self._names)}"
        action = FaultAction(
            action="add_toxic",
            toxic=name,
            toxic_type=kind,
            stream=stream,
            toxicity=toxicity,
            attributes={k: float(v) for k, v in attributes.items()},
        )
        call = self.api.add_toxic(
            self.name, name, kind, attributes, stream=stream, toxicity=toxicity
        )
        await self._do(action, call)
        self.toxics.append(name)
        return name

    async def remove(self, name: str) -> None:
        if name in self.toxics:
            call = self.api.remove_toxic(self.name, name)
            await self._do(FaultAction(action="remove_toxic", toxic=name), call)
            self.toxics.remove(name)

    async def heal(self) -> None:
        """Remove every toxic and enable the proxy."""

        async def all_of_it() -> None:
            for name in list(self.toxics):
                await self.api.remove_toxic(self.name, name)
                self.toxics.remove(name)
            await self.api.set_enabled(self.name, True)
            self._enabled = True

        async with self._switching:
            await self._do(FaultAction(action="heal"), all_of_it())

    async def close(self) -> None:
        await self._do(FaultAction(action="delete"), self.api.delete_proxy(self.name))
