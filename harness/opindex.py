"""Where each process's operations are in a history, so that judging one client's step reads
that client's operations instead of the whole history.

A herd of 1,000 clients records a few dozen operations each, all interleaved. Judging every
client's steps by scanning every operation made judging, in a run and in ``harness check``,
quadratic in the size of the herd. The index is built as the history grows (it only grows);
when workers' histories are merged into it, the history is reordered and its ``revision``
changes, and the index starts again from the beginning.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from harness.history import History, Op, Outcome, SendMessage, Sent


class OpIndex:
    """Positions of each process's operations, and the messages sent in each session."""

    def __init__(self, history: History) -> None:
        self.history = history
        self._reset()

    def _reset(self) -> None:
        self._revision = self.history.revision
        self._done = 0
        self._positions: dict[str, list[int]] = {}
        self._holding: dict[str, str | None] = {}
        self._texts: dict[int, str] = {}
        self._sent: dict[str, list[tuple[int, str, str]]] = {}

    def _catch_up(self) -> None:
        if self._revision != self.history.revision:
            self._reset()
        ops = self.history.ops
        for position in range(self._done, len(ops)):
            op = ops[position]
            self._positions.setdefault(op.process, []).append(position)
            body = op.body
            if isinstance(body, Outcome) and op.phase == "ok" and body.kind != "rejected":
                self._holding[op.process] = body.session
            elif isinstance(body, SendMessage) and op.phase == "invoke":
                self._texts[op.id] = body.text
            elif isinstance(body, Sent) and op.id in self._texts:
                # A message belongs to the session its client held when it was sent.
                session = self._holding.get(op.process)
                if session is not None:
                    entry = (position, body.message_id, self._texts[op.id])
                    self._sent.setdefault(session, []).append(entry)
        self._done = len(ops)

    def of(self, processes: Iterable[str | None], start: int, end: int) -> list[Op]:
        """The operations of ``processes`` at positions ``start`` to ``end`` (excluded), in
        history order."""
        self._catch_up()
        found: list[int] = []
        for process in set(processes):
            if process is None:
                continue
            positions = self._positions.get(process, [])
            found.extend(positions[bisect_left(positions, start) : bisect_left(positions, end)])
        found.sort()
        ops = self.history.ops
        return [ops[p] for p in found]

    def sent_in_session(self, session: str | None, end: int) -> list[tuple[str, str]]:
        """(message id, text) of every message sent in ``session`` before position ``end``, by
        any client, in order (``checkers.sent_in_session`` over the history's first ``end``)."""
        self._catch_up()
        if session is None:
            return []
        return [(mid, text) for p, mid, text in self._sent.get(session, ()) if p < end]
