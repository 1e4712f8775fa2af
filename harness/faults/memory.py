"""The fault layer of a ``MemoryWorld``: Toxiproxy's actions, played on in-memory links.

It stands in for ``FaultLayer`` where no socket is involved (the runner's unit tests) and
records every action in the scenario's history exactly as ``FaultLayer`` does: a
``FaultAction`` invocation (process ``fault``) and its completion. The network effects are the
world's (``MemoryWorld.proxy_down``, ``add_toxic`` ...), with Toxiproxy's attribute names and
units, so ``harness.faults.layer.toxic_attributes`` feeds both.

A toxic the world cannot play (``slow_close``) is refused: the action is recorded as failed
and ``FaultUnsupportedError`` is raised, an infrastructure error (the harness could not run the
scenario as written), never the target's failure. ``answering = False`` plays a fault layer
that stopped answering (a frozen Toxiproxy), to test that the runner blames the right party.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Final, TypeVar

from harness.errors import HarnessInfrastructureError
from harness.faults.toxiproxy_client import Stream
from harness.history import Done, Failure, FaultAction, History
from harness.targets.memory import Direction, MemoryWorld

T = TypeVar("T")

PROXY_ADDRESS: Final = ("memory-proxy", 0)
"""What clients on the proxy route are given as ``Route.connect_to``: any address there means
"through the fault layer" to the memory driver."""

_HALF_OPEN: Final[tuple[tuple[str, Direction], ...]] = (
    ("half-open-up", "upstream"),
    ("half-open-down", "downstream"),
)


class FaultUnsupportedError(HarnessInfrastructureError):
    """The memory fault layer cannot play this fault."""


class FaultLayerSilentError(HarnessInfrastructureError):
    """The fault layer did not answer (``MemoryFaults.answering`` is False)."""


class MemoryFaults:
    """One scenario's fault layer over a world's proxy."""

    def __init__(self, world: MemoryWorld, history: History) -> None:
        self.world = world
        self.history = history
        self.toxics: list[str] = []
        self.answering = True
        self._names = itertools.count(1)

    @property
    def address(self) -> tuple[str, int]:
        return PROXY_ADDRESS

    async def _do(self, action: FaultAction, call: Callable[[], T]) -> T:
        op = self.history.invoke("fault", action)
        if not self.answering:
            error = "the fault layer did not answer"
            self.history.complete(op, "fail", Failure(error=error, infrastructure=True))
            raise FaultLayerSilentError(error)
        try:
            result = call()
        except ValueError as exc:
            self.history.complete(op, "fail", Failure(error=str(exc), infrastructure=True))
            raise FaultUnsupportedError(str(exc)) from None
        except BaseException:
            self.history.complete(op, "info", Failure(error="interrupted"))
            raise
        self.history.complete(op, "ok", Done())
        return result

    async def start(self, upstream: str) -> None:
        await self._do(FaultAction(action="create", upstream=upstream), lambda: None)

    async def healthy(self, timeout: float) -> bool:
        return self.answering

    async def down(self) -> None:
        await self._do(FaultAction(action="down"), self.world.proxy_down)

    async def up(self) -> None:
        await self._do(FaultAction(action="up"), self.world.proxy_up)

    async def half_open(self) -> None:
        def both() -> None:
            for name, stream in _HALF_OPEN:
                self.world.add_toxic(name, "timeout", {"timeout": 0.0}, stream=stream)
                self.toxics.append(name)

        await self._do(FaultAction(action="half_open"), both)

    async def add(
        self, kind: str, attributes: dict[str, int | float], *, stream: Stream, toxicity: float
    ) -> str:
        name = f"{kind}-{next(self._names)}"
        values = {k: float(v) for k, v in attributes.items()}
        action = FaultAction(
            action="add_toxic",
            toxic=name,
            toxic_type=kind,
            stream=stream,
            toxicity=toxicity,
            attributes=values,
        )

        def add() -> None:
            self.world.add_toxic(name, kind, values, stream=stream, toxicity=toxicity)

        await self._do(action, add)
        self.toxics.append(name)
        return name

    async def remove(self, name: str) -> None:
        if name in self.toxics:
            await self._do(
                FaultAction(action="remove_toxic", toxic=name),
                lambda: self.world.remove_toxic(name),
            )
            self.toxics.remove(name)

    async def heal(self) -> None:
        def all_of_it() -> None:
            self.world.heal()
            self.toxics.clear()

        await self._do(FaultAction(action="heal"), all_of_it)

    async def close(self) -> None:
        await self._do(FaultAction(action="delete"), lambda: None)
