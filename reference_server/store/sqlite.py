"""A durable store in one SQLite file (stdlib ``sqlite3``), the reference server's default.

Durability promise: a change whose ``commit()`` returned survives the server process being
killed (SIGKILL included). The database runs in WAL mode with ``synchronous=NORMAL``: every
transaction is written to the WAL file before ``commit()`` returns, so it is in the
operating system's page cache and survives the death of the process; the WAL is only
fsync'ed at checkpoints, so a power loss or kernel crash may lose the last transactions.
That is the trade we make (``synchronous=FULL`` would fsync every commit, at a large cost).

One connection, opened with ``check_same_thread=False``: the server calls the store from
its single asyncio thread, never from two threads at once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from typing import Literal, cast

import msgspec

from reference_server.protocol.messages import AgentContextData, HistoryEntry
from reference_server.protocol.session import SessionSnapshot

from .base import Change, HistoryPage, StoredSession, page

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    snapshot BLOB NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS replay (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    frame BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS request_ids (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (session_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS request_ids_by_seq ON request_ids (session_id, seq);
CREATE TABLE IF NOT EXISTS history (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    idx INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'agent')),
    message_id TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (session_id, idx)
);
CREATE TABLE IF NOT EXISTS context (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id),
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (
    session_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""

_TABLES = ("sessions", "replay", "request_ids", "history", "context")

_encoder = msgspec.json.Encoder()
_snapshot_decoder = msgspec.json.Decoder(SessionSnapshot)
_context_decoder = msgspec.json.Decoder(AgentContextData)


class SqliteStore:
    """Sessions in a SQLite file; ``durable`` is True (see the module docstring for how)."""

    durable = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # isolation_level=None: no implicit transactions; commit() and delete() open their own.
        self._db = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        self._closed = False
        self._highest_seq: dict[str, int] = {}
        """Per session, the highest replay seq ever stored (0: none). Frames above it are new."""
        self._request_ids_from: dict[str, int] = {}
        """Per session, the lowest client seq whose request id is kept, as last applied: ids
        are deleted only when it moves, so a session under the bound costs no delete."""
        try:
            self._configure()
        except BaseException:
            self._db.close()
            raise

    def _configure(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal" and self.path != ":memory:":
            raise sqlite3.OperationalError(f"{self.path}: cannot use WAL mode (got {mode!r})")
        # NORMAL in WAL mode: durable against a killed process (what we promise), not against
        # a power loss, which can lose the last transactions.
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version == 0:
            self._migrate(_create_schema)
        elif version == 1:
            self._migrate(_request_ids_with_seq)
        elif version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{self.path}: schema version {version}, this server knows {SCHEMA_VERSION}"
            )

    def _migrate(self, step: Callable[[sqlite3.Connection], None]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # --- writing -------------------------------------------------------------------------

    def commit(self, change: Change) -> None:
        """Apply one change in one transaction: the session row, the replay difference, new
        request ids and history entries, and the context when it changed."""
        db = self._db
        snapshot = change.snapshot
        sid = snapshot.session_id
        replay = change.replay
        db.execute("BEGIN IMMEDIATE")
        try:
            highest = self._highest_seq.get(sid)
            if highest is None:
                (stored,) = db.execute(
                    "SELECT max(seq) FROM replay WHERE session_id = ?", (sid,)
                ).fetchone()
                highest = stored or 0
            db.execute(
                "INSERT INTO sessions (id, user_id, snapshot, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, "
                "snapshot = excluded.snapshot, updated_at = excluded.updated_at",
                (sid, snapshot.user_id, _encoder.encode(snapshot), time.time()),
            )
            if replay:
                db.execute(
                    "DELETE FROM replay WHERE session_id = ? AND seq < ?", (sid, replay[0][0])
                )
            else:
                db.execute("DELETE FROM replay WHERE session_id = ?", (sid,))
            # The buffer is ordered by seq: the new frames are a suffix, found from the end.
            start = len(replay)
            while start > 0 and replay[start - 1][0] > highest:
                start -= 1
            if start < len(replay):
                db.executemany(
                    "INSERT INTO replay (session_id, seq, frame) VALUES (?, ?, ?)",
                    [(sid, seq, frame) for seq, frame in replay[start:]],
                )
            if change.new_request_ids:
                db.executemany(
                    "INSERT OR IGNORE INTO request_ids (session_id, id, seq) VALUES (?, ?, ?)",
                    [(sid, rid, seq) for rid, seq in change.new_request_ids],
                )
            ids_from = change.request_ids_from
            if ids_from > self._request_ids_from.get(sid, 1):
                db.execute(
                    "DELETE FROM request_ids WHERE session_id = ? AND seq < ?", (sid, ids_from)
                )
            if change.new_history:
                db.executemany(
                    "INSERT OR REPLACE INTO history (session_id, idx, role, message_id, text) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(sid, e.index, e.role, e.message_id, e.text) for e in change.new_history],
                )
            if change.context is not None:
                db.execute(
                    "INSERT INTO context (session_id, data) VALUES (?, ?) "
                    "ON CONFLICT (session_id) DO UPDATE SET data = excluded.data",
                    (sid, _encoder.encode(change.context)),
                )
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        # Only once the transaction is in: a rolled-back commit must not move the cache.
        self._highest_seq[sid] = replay[-1][0] if start < len(replay) else highest
        self._request_ids_from[sid] = max(ids_from, self._request_ids_from.get(sid, 1))

    def delete(self, session_id: str, reason: str, at: float) -> None:
        """Delete every row of the session in one transaction and leave a tombstone."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in reversed(_TABLES):  # children first: they reference sessions(id)
                column = "id" if table == "sessions" else "session_id"
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (session_id,))
            db.execute(
                "INSERT INTO tombstones (session_id, reason, at) VALUES (?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET reason = excluded.reason, at = excluded.at",
                (session_id, reason, at),
            )
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._highest_seq.pop(session_id, None)
        self._request_ids_from.pop(session_id, None)

    def sweep_tombstones(self, older_than: float) -> int:
        """Forget tombstones left before ``older_than``; return how many."""
        return self._db.execute("DELETE FROM tombstones WHERE at < ?", (older_than,)).rowcount

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # --- reading -------------------------------------------------------------------------

    def load_sessions(self) -> list[StoredSession]:
        """Every stored session with its replay frames (by seq) and processed request ids."""
        db = self._db
        replay: dict[str, list[tuple[int, bytes]]] = {}
        for sid, seq, frame in db.execute(
            "SELECT session_id, seq, frame FROM replay ORDER BY session_id, seq"
        ):
            replay.setdefault(sid, []).append((seq, frame))
        request_ids: dict[str, list[tuple[str, int]]] = {}
        for sid, rid, seq in db.execute(
            "SELECT session_id, id, seq FROM request_ids ORDER BY session_id, seq"
        ):
            request_ids.setdefault(sid, []).append((rid, seq))
        sessions = []
        for sid, data in db.execute("SELECT id, snapshot FROM sessions ORDER BY id"):
            frames = tuple(replay.get(sid, ()))
            self._highest_seq.setdefault(sid, frames[-1][0] if frames else 0)
            sessions.append(
                StoredSession(
                    snapshot=_snapshot_decoder.decode(data),
                    replay=frames,
                    request_ids=tuple(request_ids.get(sid, ())),
                )
            )
        return sessions

    def history(self, session_id: str, *, before: int | None, limit: int) -> HistoryPage:
        """A page of the conversation: the newest ``limit`` entries with index < ``before``,
        oldest first."""
        db = self._db
        (total,) = db.execute(
            "SELECT count(*) FROM history WHERE session_id = ?", (session_id,)
        ).fetchone()
        if limit <= 0:
            return page((), total, before, limit)
        if before is None:
            rows = db.execute(
                "SELECT idx, role, message_id, text FROM history WHERE session_id = ? "
                "ORDER BY idx DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT idx, role, message_id, text FROM history "
                "WHERE session_id = ? AND idx < ? ORDER BY idx DESC LIMIT ?",
                (session_id, before, limit),
            ).fetchall()
        entries = [
            # The role column has a CHECK constraint: it holds "user" or "agent".
            HistoryEntry(
                index=idx,
                role=cast(Literal["user", "agent"], role),
                message_id=message_id,
                text=text,
            )
            for idx, role, message_id, text in reversed(rows)
        ]
        return page(entries, total, before, limit)

    def context(self, session_id: str) -> AgentContextData | None:
        """The agent's stored context, or None when there is none."""
        row = self._db.execute(
            "SELECT data FROM context WHERE session_id = ?", (session_id,)
        ).fetchone()
        return None if row is None else _context_decoder.decode(row[0])

    def tombstone(self, session_id: str) -> str | None:
        """Why a deleted session was deleted, or None if it never existed (or was swept)."""
        row = self._db.execute(
            "SELECT reason FROM tombstones WHERE session_id = ?", (session_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def holds(self, session_id: str) -> dict[str, int]:
        """How many rows of each table the store holds for a session."""
        counts: dict[str, int] = {}
        for table in _TABLES:
            column = "id" if table == "sessions" else "session_id"
            (counts[table],) = self._db.execute(
                f"SELECT count(*) FROM {table} WHERE {column} = ?", (session_id,)
            ).fetchone()
        return counts

    def close(self) -> None:
        """Close the connection (the last connection to close checkpoints the WAL)."""
        if not self._closed:
            self._closed = True
            self._db.close()


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _request_ids_with_seq(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: request ids get their client seq, so the store can forget old ones
    (§6.1). The seq of an id stored by schema 1 is unknown: it gets the session's last client
    seq, so it is kept for a whole bound from now on, never forgotten early."""
    db.execute("ALTER TABLE request_ids ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX request_ids_by_seq ON request_ids (session_id, seq)")
    for sid, data in db.execute("SELECT id, snapshot FROM sessions").fetchall():
        last = _snapshot_decoder.decode(data).last_client_seq
        db.execute("UPDATE request_ids SET seq = ? WHERE session_id = ?", (last, sid))


def rows_of(path: str | os.PathLike[str], session_id: str) -> dict[str, int]:
    """How many rows each table holds for one session, read from the file as it is on disk
    (a read-only connection: for inspection from outside the server, e.g. by a harness
    checking that an expired session left nothing behind)."""
    uri = f"file:{os.fspath(path)}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=5.0)
    try:
        counts: dict[str, int] = {}
        for table in _TABLES:
            column = "id" if table == "sessions" else "session_id"
            (count,) = db.execute(
                f"SELECT count(*) FROM {table} WHERE {column} = ?", (session_id,)
            ).fetchone()
            counts[table] = int(count)
        return counts
    finally:
        db.close()
