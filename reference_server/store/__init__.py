"""Stores for the reference server: SQLite (durable, default) and memory (fast)."""

from .base import Change, HistoryPage, Store, StoredSession
from .memory import MemoryStore
from .sqlite import SqliteStore

_SQLITE_SUFFIXES = (".db", ".sqlite")


def open_store(spec: str) -> Store:
    """Open the store a spec names: ``memory``, ``sqlite:PATH``, or a bare ``PATH`` ending in
    ``.db`` or ``.sqlite``."""
    if spec == "memory":
        return MemoryStore()
    if spec.startswith("sqlite:"):
        path = spec.removeprefix("sqlite:")
        if path:
            return SqliteStore(path)
    elif spec.endswith(_SQLITE_SUFFIXES):
        return SqliteStore(spec)
    raise ValueError(
        f"bad store spec {spec!r}: expected 'memory', 'sqlite:PATH', "
        "or a path ending in .db or .sqlite"
    )


__all__ = [
    "Change",
    "HistoryPage",
    "MemoryStore",
    "SqliteStore",
    "Store",
    "StoredSession",
    "open_store",
]
