"""What the reference server needs from a store, whatever keeps it (docs/protocol.md §8.3).

The server calls ``commit()`` once per change, before it sends anything the change produced:
what the server has sent with a sequence number, or acknowledged, is stored first. A store
keeps, per session: the protocol snapshot, the replay frames, the processed request ids (only
those the session still remembers, §6.1: a store is as bounded as the session), the
conversation history and the agent context. ``delete()`` removes all of it and leaves a
tombstone so a late resume learns why the session is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from reference_server.protocol.messages import AgentContextData, HistoryEntry
from reference_server.protocol.session import SessionSnapshot


class Change(msgspec.Struct, frozen=True):
    """One atomic change to a session, as the server commits it."""

    snapshot: SessionSnapshot
    replay: Sequence[tuple[int, bytes]]
    """The session's whole replay buffer now; the store writes the difference."""
    new_request_ids: Sequence[tuple[str, int]] = ()
    """Request ids processed by this change, each with its client seq (§6.1)."""
    request_ids_from: int = 1
    """The lowest client seq whose request id is kept: the store forgets older ones (§6.1)."""
    new_history: Sequence[HistoryEntry] = ()
    context: AgentContextData | None = None
    """The agent context after the change, when it changed."""


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session as loaded back after a restart."""

    snapshot: SessionSnapshot
    replay: tuple[tuple[int, bytes], ...]
    request_ids: tuple[tuple[str, int], ...]
    """Processed request ids with their client seqs, oldest first."""


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Stored turns with index < before, oldest first, and how many exist in all."""

    entries: tuple[HistoryEntry, ...]
    total: int
    next_before: int | None = field(default=None)


class Store(Protocol):
    """A durable (or not) home for sessions."""

    durable: bool

    def commit(self, change: Change) -> None:
        """Apply one change atomically."""

    def load_sessions(self) -> list[StoredSession]:
        """Every session that is not deleted, for a restart."""

    def history(self, session_id: str, *, before: int | None, limit: int) -> HistoryPage:
        """A page of the conversation: entries with index < ``before`` (or the newest)."""

    def context(self, session_id: str) -> AgentContextData | None:
        """The agent's stored context, or None when there is none."""

    def delete(self, session_id: str, reason: str, at: float) -> None:
        """Delete everything the session held and leave a tombstone with ``reason``."""

    def tombstone(self, session_id: str) -> str | None:
        """Why a deleted session was deleted, or None if it never existed (or was swept)."""

    def sweep_tombstones(self, older_than: float) -> int:
        """Forget tombstones left before ``older_than``; return how many."""

    def holds(self, session_id: str) -> dict[str, int]:
        """How many rows of each kind the store holds for a session (to check deletion)."""

    def close(self) -> None:
        """Release files and connections."""


def page(
    entries: Iterable[HistoryEntry], total: int, before: int | None, limit: int
) -> HistoryPage:
    """Build a page from entries already cut to ``index < before``, newest ``limit`` of them."""
    chosen = sorted(entries, key=lambda e: e.index)[-limit:] if limit > 0 else []
    first = chosen[0].index if chosen else None
    return HistoryPage(
        entries=tuple(chosen),
        total=total,
        next_before=first if first is not None and first > 0 else None,
    )
