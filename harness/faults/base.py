"""What the runner asks of a fault layer: the network between the clients and the target.

``FaultLayer`` (a real Toxiproxy proxy) is the one end-to-end runs use; anything with these
methods can stand in for it where no socket is involved (the memory driver's unit tests).
Every action is recorded in the scenario's history by the implementation.
"""

from __future__ import annotations

from typing import Protocol

from harness.faults.toxiproxy_client import Stream


class Faults(Protocol):
    """One scenario's fault layer."""

    @property
    def address(self) -> tuple[str, int]:
        """Where clients on the proxy route open their TCP connections."""
        ...

    async def start(self, upstream: str) -> None: ...

    async def healthy(self, timeout: float) -> bool:
        """Whether the fault layer answers within ``timeout`` (to know whom to blame)."""
        ...

    async def down(self) -> None:
        """Close every connection through the layer and refuse new ones."""
        ...

    async def up(self) -> None: ...

    async def half_open(self) -> None:
        """Blackhole data both ways while both sockets stay open."""
        ...

    async def add(
        self, kind: str, attributes: dict[str, int | float], *, stream: Stream, toxicity: float
    ) -> str:
        """Add a toxic; return its name."""
        ...

    async def remove(self, name: str) -> None: ...

    async def heal(self) -> None:
        """Remove every toxic and bring the layer up."""
        ...

    async def close(self) -> None: ...
