"""Both stores against the Store protocol of reference_server/store/base.py (docs §8.3)."""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from reference_server.protocol.messages import (
    Ack,
    AgentContextData,
    Hello,
    HistoryEntry,
    ReplyChunk,
    UserMessage,
    WorkflowState,
)
from reference_server.protocol.session import ServerSession, SessionSnapshot
from reference_server.store import (
    Change,
    HistoryPage,
    MemoryStore,
    SqliteStore,
    Store,
    StoredSession,
    open_store,
)
from reference_server.store.redis import BlockingRedisStore

NOTHING = {"sessions": 0, "replay": 0, "request_ids": 0, "history": 0, "context": 0}


def _snapshot(session_id: str = "s1", **changes: object) -> SessionSnapshot:
    base = SessionSnapshot(
        session_id=session_id,
        user_id="alice",
        epoch="e1",
        client_ip="10.0.0.1",
        state="attached",
        next_seq=1,
        acked_seq=0,
        last_client_seq=0,
        detached_at=None,
        token_hash="h1",
        previous_hash=None,
        used_hashes=(),
        replay_overflow_upto=0,
    )
    return msgspec.structs.replace(base, **changes)


def _frames(*seqs: int) -> tuple[tuple[int, bytes], ...]:
    return tuple((seq, f"frame-{seq}".encode()) for seq in seqs)


def _entries(*indexes: int) -> tuple[HistoryEntry, ...]:
    return tuple(
        HistoryEntry(
            index=i, role="user" if i % 2 == 0 else "agent", message_id=f"m{i}", text=f"turn {i}"
        )
        for i in indexes
    )


def _context(step: int) -> AgentContextData:
    return AgentContextData(
        memory={"name": "Alice"},
        preferences={"tone": "brief"},
        variables={"count": step, "nested": {"a": [1, 2]}},
        workflow=WorkflowState(name="booking", step=step, completed=("search",)),
    )


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store kind, closed after the test (Redis: a real redis-server, emptied first)."""
    opened: Store
    if request.param == "redis":
        opened = BlockingRedisStore(request.getfixturevalue("redis_url"))
    else:
        opened = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield opened
    opened.close()


def _only(store: Store) -> StoredSession:
    sessions = store.load_sessions()
    assert 1 == len(sessions)
    return sessions[0]


def test_commit_and_load_round_trip(store: Store) -> None:
    """A committed snapshot, replay and request ids load back exactly."""
    snapshot = _snapshot(next_seq=3, detached_at=12.5, used_hashes=("u1", "u2"))
    store.commit(Change(snapshot=snapshot, replay=_frames(1, 2), new_request_ids=(("r1", 1),)))
    expected = StoredSession(snapshot=snapshot, replay=_frames(1, 2), request_ids=(("r1", 1),))
    assert expected == _only(store)


def test_replay_diff_appends_trims_and_clears(store: Store) -> None:
    """Across commits the stored replay always equals the buffer of the latest change."""
    buffers = [
        _frames(1),
        _frames(1, 2, 3),  # append
        _frames(3, 4),  # trim by an ack of 2, append 4
        _frames(3, 4),  # no change
        _frames(6),  # ack of 4 plus a frame 5 already acked: trim and append at once
        (),  # cleared (replay window passed)
        _frames(7, 8),  # new frames after a clear
    ]
    for seq, buffer in enumerate(buffers, start=1):
        store.commit(Change(snapshot=_snapshot(next_seq=seq), replay=buffer))
        assert buffer == _only(store).replay
        assert len(buffer) == store.holds("s1")["replay"]


def test_replay_diff_resumes_after_reopen(tmp_path: Path) -> None:
    """A reopened SQLite store learns the highest stored seq and keeps diffing correctly."""
    path = tmp_path / "s.db"
    first = SqliteStore(path)
    first.commit(Change(snapshot=_snapshot(), replay=_frames(1, 2)))
    first.close()
    second = SqliteStore(path)
    second.commit(Change(snapshot=_snapshot(), replay=_frames(2, 3)))
    assert _frames(2, 3) == _only(second).replay
    second.close()


def test_sessions_are_kept_apart(store: Store) -> None:
    """Two sessions' rows never mix, and deleting one leaves the other."""
    store.commit(Change(snapshot=_snapshot("a"), replay=_frames(1), new_request_ids=(("ra", 1),)))
    store.commit(Change(snapshot=_snapshot("b"), replay=_frames(1, 2), new_history=_entries(0)))
    store.delete("a", "closed", at=1.0)
    expected = {"sessions": 1, "replay": 2, "request_ids": 0, "history": 1, "context": 0}
    assert expected == store.holds("b")
    assert ["b"] == [s.snapshot.session_id for s in store.load_sessions()]


def test_request_ids_accumulate(store: Store) -> None:
    """New request ids add to those stored; a repeated id is stored once, at its first seq."""
    store.commit(Change(snapshot=_snapshot(), replay=(), new_request_ids=(("r1", 1), ("r2", 2))))
    store.commit(Change(snapshot=_snapshot(), replay=(), new_request_ids=(("r2", 3), ("r3", 4))))
    assert (("r1", 1), ("r2", 2), ("r3", 4)) == _only(store).request_ids
    assert 3 == store.holds("s1")["request_ids"]


def test_request_ids_below_the_bound_are_forgotten(store: Store) -> None:
    """§6.1: ids of client seqs below request_ids_from are deleted, in memory and on disk."""
    for seq in range(1, 11):
        change = Change(
            snapshot=_snapshot(last_client_seq=seq),
            replay=(),
            new_request_ids=((f"r{seq}", seq),),
            request_ids_from=max(1, seq - 3),
        )
        store.commit(change)
    assert tuple((f"r{seq}", seq) for seq in range(7, 11)) == _only(store).request_ids
    assert 4 == store.holds("s1")["request_ids"]


def test_sqlite_schema_1_gains_request_seqs(tmp_path: Path) -> None:
    """A schema-1 file (ids without seqs) opens as schema 2, each old id at its session's
    last client seq, so none is forgotten before a whole bound has passed."""
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
            snapshot BLOB NOT NULL, updated_at REAL NOT NULL);
        CREATE TABLE replay (session_id TEXT NOT NULL, seq INTEGER NOT NULL,
            frame BLOB NOT NULL, PRIMARY KEY (session_id, seq)) WITHOUT ROWID;
        CREATE TABLE request_ids (session_id TEXT NOT NULL, id TEXT NOT NULL,
            PRIMARY KEY (session_id, id)) WITHOUT ROWID;
        CREATE TABLE history (session_id TEXT NOT NULL, idx INTEGER NOT NULL,
            role TEXT NOT NULL, message_id TEXT NOT NULL, text TEXT NOT NULL,
            PRIMARY KEY (session_id, idx));
        CREATE TABLE context (session_id TEXT PRIMARY KEY, data BLOB NOT NULL);
        CREATE TABLE tombstones (session_id TEXT PRIMARY KEY, reason TEXT NOT NULL,
            at REAL NOT NULL);
        PRAGMA user_version = 1;
        """
    )
    snapshot = msgspec.json.encode(_snapshot(last_client_seq=9))
    db.execute("INSERT INTO sessions VALUES ('s1', 'alice', ?, 0)", (snapshot,))
    db.executemany("INSERT INTO request_ids VALUES ('s1', ?)", [("r1",), ("r9",)])
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert (("r1", 9), ("r9", 9)) == _only(store).request_ids
    store.close()
    db = sqlite3.connect(path)
    assert (2,) == db.execute("PRAGMA user_version").fetchone()
    db.close()


def test_history_pages_newest_first_by_before(store: Store) -> None:
    """Pages walk back from the newest entries with before/limit; next_before chains them."""
    store.commit(Change(snapshot=_snapshot(), replay=(), new_history=_entries(0, 1, 2)))
    store.commit(Change(snapshot=_snapshot(), replay=(), new_history=_entries(3, 4)))
    first = store.history("s1", before=None, limit=2)
    assert HistoryPage(entries=_entries(3, 4), total=5, next_before=3) == first
    second = store.history("s1", before=first.next_before, limit=2)
    assert HistoryPage(entries=_entries(1, 2), total=5, next_before=1) == second
    last = store.history("s1", before=second.next_before, limit=2)
    assert HistoryPage(entries=_entries(0), total=5, next_before=None) == last


def test_history_edge_cases(store: Store) -> None:
    """Empty sessions, limit 0, before 0 and a limit beyond the start give the right pages."""
    assert HistoryPage(entries=(), total=0) == store.history("nobody", before=None, limit=10)
    store.commit(Change(snapshot=_snapshot(), replay=()))
    assert HistoryPage(entries=(), total=0) == store.history("s1", before=None, limit=10)
    store.commit(Change(snapshot=_snapshot(), replay=(), new_history=_entries(0, 1, 2)))
    assert HistoryPage(entries=(), total=3) == store.history("s1", before=None, limit=0)
    assert HistoryPage(entries=(), total=3) == store.history("s1", before=0, limit=10)
    assert HistoryPage(entries=_entries(0, 1, 2), total=3) == store.history(
        "s1", before=None, limit=10
    )
    assert HistoryPage(entries=_entries(0, 1), total=3) == store.history("s1", before=2, limit=99)
    assert HistoryPage(entries=_entries(0, 1, 2), total=3) == store.history(
        "s1", before=100, limit=10
    )


def test_history_entry_with_a_stored_index_replaces_it(store: Store) -> None:
    """Committing an entry whose index is already stored replaces the old one."""
    store.commit(Change(snapshot=_snapshot(), replay=(), new_history=_entries(0, 1)))
    fixed = HistoryEntry(index=1, role="agent", message_id="m1", text="corrected")
    store.commit(Change(snapshot=_snapshot(), replay=(), new_history=(fixed,)))
    expected = HistoryPage(entries=(*_entries(0), fixed), total=2)
    assert expected == store.history("s1", before=None, limit=10)


def test_context_is_upserted_and_kept_when_unchanged(store: Store) -> None:
    """The context is replaced when a change carries one and kept when it carries None."""
    assert store.context("s1") is None
    store.commit(Change(snapshot=_snapshot(), replay=(), context=_context(1)))
    assert _context(1) == store.context("s1")
    store.commit(Change(snapshot=_snapshot(), replay=(), context=_context(2)))
    store.commit(Change(snapshot=_snapshot(), replay=()))
    assert _context(2) == store.context("s1")
    assert 1 == store.holds("s1")["context"]


def test_delete_leaves_nothing_but_a_tombstone(store: Store) -> None:
    """delete() removes every row of the session and records why."""
    store.commit(
        Change(
            snapshot=_snapshot(),
            replay=_frames(1, 2),
            new_request_ids=(("r1", 1),),
            new_history=_entries(0, 1),
            context=_context(1),
        )
    )
    expected_before = {"sessions": 1, "replay": 2, "request_ids": 1, "history": 2, "context": 1}
    assert expected_before == store.holds("s1")
    store.delete("s1", "revoked", at=100.0)
    assert NOTHING == store.holds("s1")
    assert [] == store.load_sessions()
    assert store.context("s1") is None
    assert HistoryPage(entries=(), total=0) == store.history("s1", before=None, limit=10)
    assert "revoked" == store.tombstone("s1")
    assert store.tombstone("never-existed") is None


def test_session_id_reused_after_delete_starts_clean(store: Store) -> None:
    """A session committed again after its deletion stores its new frames from seq 1."""
    store.commit(Change(snapshot=_snapshot(), replay=_frames(1, 2, 3)))
    store.delete("s1", "closed", at=1.0)
    store.commit(Change(snapshot=_snapshot(), replay=_frames(1)))
    assert _frames(1) == _only(store).replay


def test_sweep_forgets_only_old_tombstones(store: Store) -> None:
    """sweep_tombstones() drops tombstones left before the cut-off and counts them."""
    store.delete("old", "expired", at=10.0)
    store.delete("new", "closed", at=20.0)
    assert 1 == store.sweep_tombstones(older_than=15.0)
    assert store.tombstone("old") is None
    assert "closed" == store.tombstone("new")
    assert 0 == store.sweep_tombstones(older_than=15.0)


def test_sqlite_data_survives_reopening(tmp_path: Path) -> None:
    """Everything committed to a SQLite file is there after closing and reopening it."""
    path = tmp_path / "s.db"
    first = SqliteStore(path)
    change = Change(
        snapshot=_snapshot(next_seq=3),
        replay=_frames(1, 2),
        new_request_ids=(("r1", 1), ("r2", 2)),
        new_history=_entries(0, 1),
        context=_context(3),
    )
    first.commit(change)
    first.delete("gone", "expired", at=5.0)
    first.close()
    second = SqliteStore(path)
    expected = StoredSession(
        snapshot=change.snapshot, replay=_frames(1, 2), request_ids=(("r1", 1), ("r2", 2))
    )
    assert expected == _only(second)
    assert HistoryPage(entries=_entries(0, 1), total=2) == second.history(
        "s1", before=None, limit=10
    )
    assert _context(3) == second.context("s1")
    assert "expired" == second.tombstone("gone")
    second.close()


def test_sqlite_refuses_an_unknown_schema_version(tmp_path: Path) -> None:
    """A file written by a newer schema is refused rather than misread."""
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="schema version 99"):
        SqliteStore(path)


def _chunk(seq: int, *, index: int) -> ReplyChunk:
    return ReplyChunk(
        seq=seq, in_reply_to="req-1", chunk_index=index, text=f"part {index}", final=index == 3
    )


def _live_session() -> ServerSession:
    """A session that sent replies, processed a request, got an ack and lost its connection."""
    session = ServerSession(
        session_id="live", user_id="alice", epoch="e1", client_ip="10.0.0.1", now=0.0
    )
    session.welcome(Hello(versions=(1,)))
    session.receive(UserMessage(id="req-1", seq=1, text="hi"), now=1.0)
    for i in range(4):
        session.send(functools.partial(_chunk, index=i))
    session.receive(Ack(seq=2), now=2.0)
    session.connection_lost(now=3.0)
    return session


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_restored_session_equals_the_original(kind: str, tmp_path: Path) -> None:
    """ServerSession.restore() from load_sessions() rebuilds the snapshot and replay buffer."""
    original = _live_session()
    store = open_store("memory" if kind == "memory" else f"sqlite:{tmp_path / 's.db'}")
    store.commit(
        Change(
            snapshot=original.snapshot(),
            replay=original.replay_buffer,
            new_request_ids=tuple(original.processed_ids.items()),
        )
    )
    (stored,) = store.load_sessions()
    restored = ServerSession.restore(
        stored.snapshot, replay=stored.replay, processed_ids=stored.request_ids, now=50.0
    )
    store.close()
    assert original.snapshot() == restored.snapshot()
    assert original.replay_buffer == restored.replay_buffer
    assert original.processed_ids == restored.processed_ids
    assert [3, 4] == [seq for seq, _ in restored.replay_buffer]


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from reference_server.protocol.session import SessionSnapshot
    from reference_server.store import Change, SqliteStore
    from reference_server.protocol.messages import HistoryEntry

    store = SqliteStore(sys.argv[1])
    n = int(sys.argv[2])
    for i in range(1, n + 1):
        snapshot = SessionSnapshot(
            session_id="s1", user_id="alice", epoch="e1", client_ip="10.0.0.1",
            state="attached", next_seq=i + 1, acked_seq=0, last_client_seq=i,
            detached_at=None, token_hash="h", previous_hash=None, used_hashes=(),
            replay_overflow_upto=0,
        )
        store.commit(Change(
            snapshot=snapshot,
            replay=tuple((s, b"frame-%d" % s) for s in range(1, i + 1)),
            new_request_ids=(("r%d" % i, i),),
            new_history=(HistoryEntry(index=i - 1, role="user", message_id="m", text="t"),),
        ))
    print("done", flush=True)
    time.sleep(60)
    """
)


def test_sqlite_commits_survive_sigkill(tmp_path: Path) -> None:
    """Every commit() that returned before the process was SIGKILLed is in the file."""
    path = tmp_path / "s.db"
    commits = 50
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path), str(commits)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        try:
            assert child.stdout is not None
            assert "done\n" == child.stdout.readline()
        finally:
            child.kill()
            child.wait()
    assert -9 == child.returncode
    reopened = SqliteStore(path)
    stored = _only(reopened)
    assert commits + 1 == stored.snapshot.next_seq
    assert _frames(*range(1, commits + 1)) == stored.replay
    assert tuple((f"r{i}", i) for i in range(1, commits + 1)) == stored.request_ids
    assert commits == reopened.history("s1", before=None, limit=0).total
    reopened.close()


def test_open_store_understands_its_specs(tmp_path: Path) -> None:
    """open_store() maps memory, sqlite:PATH and bare .db/.sqlite paths to the right store."""
    opened = [
        open_store("memory"),
        open_store(f"sqlite:{tmp_path / 'a.data'}"),
        open_store(str(tmp_path / "b.db")),
        open_store(str(tmp_path / "c.sqlite")),
    ]
    assert [MemoryStore, SqliteStore, SqliteStore, SqliteStore] == [type(s) for s in opened]
    assert [False, True, True, True] == [s.durable for s in opened]
    for s in opened:
        s.close()


@pytest.mark.parametrize("spec", ["", "sqlite:", "redis://x", "store.txt"])
def test_open_store_rejects_bad_specs(spec: str) -> None:
    """A spec that names no store raises ValueError listing the accepted forms."""
    with pytest.raises(ValueError, match=r"'memory', 'sqlite:PATH'"):
        open_store(spec)
