"""The recorded history of a run: every operation, invoked then completed (Jepsen style).

Each operation is recorded twice: ``invoke`` when it starts and ``ok``, ``fail`` or ``info``
(outcome unknown, e.g. a send whose connection died) when it ends, with monotonic times.
Checkers and reports read only this record and what the server answered, never logs.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Phase = Literal["invoke", "ok", "fail", "info"]


@dataclass(frozen=True, slots=True)
class Op:
    """One line of the history."""

    id: int
    client: str
    kind: str
    phase: Phase
    time: float
    """Seconds since the run started (monotonic)."""
    data: dict[str, Any] = field(default_factory=dict)


class History:
    """An append-only list of operations with a shared monotonic clock."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._ids = itertools.count(1)
        self._start = time.monotonic()

    def now(self) -> float:
        """Seconds since the history began."""
        return time.monotonic() - self._start

    def invoke(self, client: str, kind: str, **data: Any) -> int:
        """Record the start of an operation; return its id for ``complete``."""
        op_id = next(self._ids)
        self.ops.append(Op(op_id, client, kind, "invoke", self.now(), dict(data)))
        return op_id

    def complete(self, op_id: int, phase: Phase, **data: Any) -> Op:
        """Record how operation ``op_id`` ended."""
        start = next(op for op in reversed(self.ops) if op.id == op_id and op.phase == "invoke")
        op = Op(op_id, start.client, start.kind, phase, self.now(), dict(data))
        self.ops.append(op)
        return op

    def event(self, client: str, kind: str, **data: Any) -> Op:
        """Record something observed rather than done (a fault applied, a message delivered)."""
        op_id = next(self._ids)
        op = Op(op_id, client, kind, "info", self.now(), dict(data))
        self.ops.append(op)
        return op

    def durations(self, kind: str) -> list[float]:
        """Seconds each completed (``ok``) operation of ``kind`` took."""
        starts = {op.id: op.time for op in self.ops if op.kind == kind and op.phase == "invoke"}
        return [
            op.time - starts[op.id]
            for op in self.ops
            if op.kind == kind and op.phase == "ok" and op.id in starts
        ]
