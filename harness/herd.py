"""The once-only steps of a ``parallel`` group: one gate per ``once`` step (docs/scenarios.md).

A client of the group that reaches a ``once`` step waits at that step's gate. The gate opens
when every client of the group has either arrived or ended (its steps over, passed or
failed): a client that failed on its way is not waited for. The gate's steps then run one
time, and every waiting client goes on with their outcome: ``None`` when they held, else why
not. ``within`` bounds the wait from the first arrival: a gate still waiting for a client then
fails for everyone at it and for each late one as it comes, and its steps do not run.

The same ``Herd`` serves a group run in one process and a group spread over worker processes
(``harness.workers``): there the parent holds it and the workers' clients arrive and leave
through messages, so the steps of ``once`` (the fault layer, the target, the clock) always run
in the parent, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from harness.scenario import model as m

__all__ = ["Herd", "HerdLike", "RunOnce", "gate_key"]

RunOnce = Callable[[str, m.Once], Awaitable[str | None]]
"""Run a gate's steps under ``key`` (the prefix of their paths); None: they held."""


def gate_key(group_path: str, client: str, step_path: str) -> str:
    """The gate of a client's ``once`` step at ``step_path``: the same for every client of the
    group (``1.p7.2.3`` in the group at ``1``: ``1.once.2.3``), and the prefix of the paths of
    its steps (``1.once.2.3.1`` is the first), which ``resolve_step`` reads back."""
    own = f"{group_path}.{client}."
    assert step_path.startswith(own), (step_path, own)
    return f"{group_path}.once.{step_path.removeprefix(own)}"


class HerdLike(Protocol):
    """What a client of a group does at a ``once`` step, and when its steps are over."""

    async def arrive(self, key: str, once: m.Once, client: str) -> str | None: ...

    def leave(self, client: str) -> None: ...


@dataclass
class _Gate:
    arrived: set[str] = field(default_factory=set)
    outcome: asyncio.Future[str | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    opened: bool = False
    deadline: float = 0.0


class Herd:
    """The gates of one run of a ``parallel`` step, for its ``names`` clients.

    ``group`` is the task group the gates' steps run in (the group's own: cancelling the group
    cancels them); ``run_once`` runs them."""

    def __init__(self, names: Sequence[str], group: asyncio.TaskGroup, run_once: RunOnce) -> None:
        self.names = frozenset(names)
        self.group = group
        self.run_once = run_once
        self.ended: set[str] = set()
        self.gates: dict[str, _Gate] = {}
        self._once: dict[str, m.Once] = {}

    async def arrive(self, key: str, once: m.Once, client: str) -> str | None:
        """Wait at gate ``key`` until its steps ran (their outcome) or ``once.within`` passed
        without every client of the group there (why not)."""
        loop = asyncio.get_running_loop()
        gate = self.gates.get(key)
        if gate is None:
            gate = self.gates[key] = _Gate(deadline=loop.time() + float(once.within))
            self._once[key] = once
        if gate.outcome.done():
            return gate.outcome.result()  # a client that came after the gate gave up
        gate.arrived.add(client)
        self._check(key)
        left = gate.deadline - loop.time()
        if not gate.opened and left > 0:
            await asyncio.wait([gate.outcome], timeout=left)
        if not gate.opened and not gate.outcome.done():
            gate.outcome.set_result(self._late(key, gate, once))
        # Open: its steps are bounded by their own timeouts (and the scenario's).
        return await asyncio.shield(gate.outcome)

    def leave(self, client: str) -> None:
        """``client`` has no steps left (or failed): no gate waits for it any longer."""
        self.ended.add(client)
        for key in list(self.gates):
            self._check(key)

    def _check(self, key: str) -> None:
        gate = self.gates[key]
        if gate.opened or gate.outcome.done() or not gate.arrived:
            return
        accounted = len(gate.arrived) + len(self.ended) - len(gate.arrived & self.ended)
        if accounted < len(self.names):
            return
        gate.opened = True
        try:
            self.group.create_task(self._open(key, gate))
        except RuntimeError:  # the group is stopping (cancelled): nobody waits any longer
            gate.outcome.set_result("the group stopped before the steps of `once` ran")

    async def _open(self, key: str, gate: _Gate) -> None:
        try:
            outcome = await self.run_once(key, self._once[key])
        except BaseException:
            if not gate.outcome.done():
                gate.outcome.set_result("the steps of `once` were cut short")
            raise
        gate.outcome.set_result(outcome)

    def _late(self, key: str, gate: _Gate, once: m.Once) -> str:
        missing = sorted(self.names - gate.arrived - self.ended)
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return (
            f"{len(gate.arrived)} of {len(gate.arrived) + len(missing)} running clients reached"
            f" `once` ({key}) within {float(once.within):g} s (still on their way:"
            f" {', '.join(missing[:5])}{more}); its steps did not run"
        )
