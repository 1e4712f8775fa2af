"""A store in plain dicts: nothing survives the process, and commit() costs next to nothing.

This is the throughput store. ``commit()`` keeps references rather than copies: the latest
snapshot (immutable), the replay buffer as the tuple the server handed over (frames are
immutable ``bytes``), and appends new request ids (forgetting those the session forgot) and
history entries.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field

from reference_server.protocol.messages import AgentContextData, HistoryEntry
from reference_server.protocol.session import SessionSnapshot

from .base import Change, HistoryPage, StoredSession, page


def _index(entry: HistoryEntry) -> int:
    return entry.index


@dataclass(slots=True)
class _Held:
    snapshot: SessionSnapshot
    replay: tuple[tuple[int, bytes], ...] = ()
    request_ids: OrderedDict[str, int] = field(default_factory=OrderedDict)
    """Request id -> client seq, oldest first (ids arrive in seq order)."""
    history: list[HistoryEntry] = field(default_factory=list)
    """Kept sorted by index (entries normally arrive in order, so this is an append)."""
    context: AgentContextData | None = None


class MemoryStore:
    """Sessions in memory; ``durable`` is False: a restart forgets everything."""

    durable = False

    def __init__(self) -> None:
        self._sessions: dict[str, _Held] = {}
        self._tombstones: dict[str, tuple[str, float]] = {}

    def rows_of(self, session_id: str) -> dict[str, int]:
        """What the store holds for one session, counted as the SQLite store's rows are."""
        held = self._sessions.get(session_id)
        if held is None:
            return dict.fromkeys(("sessions", "replay", "request_ids", "history", "context"), 0)
        return {
            "sessions": 1,
            "replay": len(held.replay),
            "request_ids": len(held.request_ids),
            "history": len(held.history),
            "context": 0 if held.context is None else 1,
        }

    def commit(self, change: Change) -> None:
        """Apply one change; the replay tuple is kept by reference, not copied."""
        snapshot = change.snapshot
        held = self._sessions.get(snapshot.session_id)
        if held is None:
            held = self._sessions[snapshot.session_id] = _Held(snapshot)
        else:
            held.snapshot = snapshot
        # tuple() of a tuple is the same object: the server's replay_buffer costs nothing here.
        held.replay = tuple(change.replay)
        ids = held.request_ids
        for request_id, seq in change.new_request_ids:
            ids.setdefault(request_id, seq)
        while ids and next(iter(ids.values())) < change.request_ids_from:
            ids.popitem(last=False)
        for entry in change.new_history:
            _add_entry(held.history, entry)
        if change.context is not None:
            held.context = change.context

    def load_sessions(self) -> list[StoredSession]:
        """Every session held (only useful within one process: tests, a server restart
        in place)."""
        return [
            StoredSession(
                snapshot=held.snapshot,
                replay=held.replay,
                request_ids=tuple(held.request_ids.items()),
            )
            for held in self._sessions.values()
        ]

    def history(self, session_id: str, *, before: int | None, limit: int) -> HistoryPage:
        """A page of the conversation: the newest ``limit`` entries with index < ``before``."""
        held = self._sessions.get(session_id)
        if held is None:
            return page((), 0, before, limit)
        entries = held.history
        end = len(entries) if before is None else bisect.bisect_left(entries, before, key=_index)
        chosen = entries[max(0, end - limit) : end] if limit > 0 else []
        return page(chosen, len(entries), before, limit)

    def context(self, session_id: str) -> AgentContextData | None:
        """The agent's stored context, or None when there is none."""
        held = self._sessions.get(session_id)
        return None if held is None else held.context

    def delete(self, session_id: str, reason: str, at: float) -> None:
        """Forget everything the session held and leave a tombstone with ``reason``."""
        self._sessions.pop(session_id, None)
        self._tombstones[session_id] = (reason, at)

    def tombstone(self, session_id: str) -> str | None:
        """Why a deleted session was deleted, or None."""
        stone = self._tombstones.get(session_id)
        return None if stone is None else stone[0]

    def sweep_tombstones(self, older_than: float) -> int:
        """Forget tombstones left before ``older_than``; return how many."""
        old = [sid for sid, (_, at) in self._tombstones.items() if at < older_than]
        for sid in old:
            del self._tombstones[sid]
        return len(old)

    def holds(self, session_id: str) -> dict[str, int]:
        """How many items of each kind the store holds for a session."""
        held = self._sessions.get(session_id)
        if held is None:
            return {"sessions": 0, "replay": 0, "request_ids": 0, "history": 0, "context": 0}
        return {
            "sessions": 1,
            "replay": len(held.replay),
            "request_ids": len(held.request_ids),
            "history": len(held.history),
            "context": 0 if held.context is None else 1,
        }

    def close(self) -> None:
        """Nothing to release."""


def _add_entry(history: list[HistoryEntry], entry: HistoryEntry) -> None:
    """Append in index order; an entry with an index already stored replaces it (as SQLite's
    INSERT OR REPLACE does)."""
    if not history or history[-1].index < entry.index:
        history.append(entry)
        return
    at = bisect.bisect_left(history, entry.index, key=_index)
    if at < len(history) and history[at].index == entry.index:
        history[at] = entry
    else:
        history.insert(at, entry)
