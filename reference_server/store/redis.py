"""Sessions in Redis, shared by every node of a cluster (docs/cluster.md), with the async
client of the ``redis`` package.

Layout. Every key of one session carries the session id as its hash tag, ``{SID}``, so the
session lives in one slot and each of the scripts below touches one slot only: the layout
works on Redis Cluster unchanged. ``P`` is the key prefix (``wsc`` by default).

| key | type | what |
|---|---|---|
| ``P:{SID}:meta`` | hash | the protocol snapshot and what the nodes need (below) |
| ``P:{SID}:replay`` | sorted set | replay frames, score = seq, member = ``seq|frame`` |
| ``P:{SID}:ids`` | sorted set | processed request ids, score = their client seq (§6.1) |
| ``P:{SID}:hist`` | sorted set | conversation turns, score = index, member = the entry as JSON |
| ``P:{SID}:ctx`` | string | the agent context, JSON |
| ``P:{SID}:tomb`` | hash | ``reason`` and ``at`` of a deleted session (§8.3) |

The meta hash: ``snap`` (the snapshot, JSON), ``user``, ``ver`` (bumped by every commit),
``att`` (bumped by every accepted hello or resume), ``own`` (the node the session is attached
to, or empty), ``det`` (when it detached), ``hlen`` (history length), ``upd`` (updated at).

Three keys are not a session's: ``P:expiry`` (sorted set, session id -> when its resumable
window ends, for the sweepers), ``P:tombstones`` (session id -> when it was deleted) and
``P:nodes`` (node id -> when it last said it is alive). They are indexes only: each is
updated after the session's own script, and every decision is taken again inside the
session's slot, so a stale index entry costs a look-up, never a wrong answer.

Atomicity. A commit is one Lua script that checks ``ver`` against the version the writer
expects and ``att`` against the attach it holds, and refuses the whole change otherwise
(compare-and-set): a node that lost a session to another node cannot write over it (fencing),
and two resumes decided at once on two nodes cannot both be committed. The version alone
would not fence: a node pipelines its commits, expecting v and then v+1, and another node's
takeover can make v+1 in between. Loading a session is one MULTI/EXEC transaction.

Durability is Redis's own: with ``appendonly yes`` every write is in the append-only file
before Redis answers it, so a change whose commit was answered survives Redis being killed;
with ``appendfsync everysec`` (the default) a power loss can lose the last second.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from reference_server.protocol.messages import AgentContextData, HistoryEntry
from reference_server.protocol.session import SessionSnapshot

from .base import Change, HistoryPage, StoredSession, page

DEFAULT_PREFIX = "wsc"
DEFAULT_TIMEOUT_S = 2.0

_encoder = msgspec.json.Encoder()
_snapshot_decoder = msgspec.json.Decoder(SessionSnapshot)
_context_decoder = msgspec.json.Decoder(AgentContextData)
_entry_decoder = msgspec.json.Decoder(HistoryEntry)

T = TypeVar("T")

StoreUnavailable = RedisError
"""What every method raises when Redis does not answer in time or refuses (the client's own
exceptions, ``ConnectionError`` and ``TimeoutError`` among them)."""

# KEYS: meta replay ids hist ctx
# ARGV: 1 expected version (0: the session must not exist), 2 snapshot, 3 user, 4 owner,
#       5 attach increment, 6 detached at (empty: attached), 7 replay keeps seqs >= this,
#       8 frames, 9 ids, 10 entries (counts), 11 context (empty: unchanged), 12 ids kept from,
#       13 updated at, 14 expected attach count (-1: any); then the frames as (seq, member),
#       ids as (id, seq), entries as (index, member).
# Returns {1, new version, highest stored seq} or {0, stored version}.
# The attach count fences as the version does, where the version alone cannot: a node that
# pipelines two commits expects versions v and v+1, and if another node's takeover made v+1
# in between, only the attach count tells the second commit from the takeover's.
_COMMIT = """
local ver = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
if ver ~= tonumber(ARGV[1]) then return {0, ver} end
local att = tonumber(redis.call('HGET', KEYS[1], 'att') or '0')
if tonumber(ARGV[14]) >= 0 and att ~= tonumber(ARGV[14]) then return {0, ver} end
local top = 0
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #last > 0 then top = tonumber(last[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[7])
local i = 15
for _ = 1, tonumber(ARGV[8]) do
  local seq = tonumber(ARGV[i])
  if seq > top then
    redis.call('ZADD', KEYS[2], seq, ARGV[i + 1])
    top = seq
  end
  i = i + 2
end
for _ = 1, tonumber(ARGV[9]) do
  redis.call('ZADD', KEYS[3], 'NX', ARGV[i + 1], ARGV[i])
  i = i + 2
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[12])
for _ = 1, tonumber(ARGV[10]) do
  redis.call('ZREMRANGEBYSCORE', KEYS[4], ARGV[i], ARGV[i])
  redis.call('ZADD', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if ARGV[11] ~= '' then redis.call('SET', KEYS[5], ARGV[11]) end
redis.call('HSET', KEYS[1], 'ver', ver + 1, 'snap', ARGV[2], 'user', ARGV[3], 'own', ARGV[4],
  'det', ARGV[6], 'hlen', redis.call('ZCARD', KEYS[4]), 'upd', ARGV[13])
redis.call('HINCRBY', KEYS[1], 'att', tonumber(ARGV[5]))
local remaining = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #remaining == 0 then top = 0 end
return {1, ver + 1, top}
"""

# KEYS: meta replay ids hist ctx tomb
# ARGV: 1 expected version (-1: any), 2 reason, 3 at, 4 expected attach count (-1: any)
# Returns 1 if the session was deleted now, 0 if its version or attach count moved or it is gone.
_DELETE = """
local ver = redis.call('HGET', KEYS[1], 'ver')
if tonumber(ARGV[1]) >= 0 and tonumber(ver or '0') ~= tonumber(ARGV[1]) then return 0 end
local att = tonumber(redis.call('HGET', KEYS[1], 'att') or '0')
if tonumber(ARGV[4]) >= 0 and att ~= tonumber(ARGV[4]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('HSET', KEYS[6], 'reason', ARGV[2], 'at', ARGV[3])
if ver then return 1 end
return 0
"""

# KEYS: meta replay ids hist ctx tomb
# ARGV: 1 now, 2 resumable window (s)
# Returns {1} expired now, {0} attached, {2, due} detached and due at `due`, {3} gone.
_EXPIRE = """
local meta = redis.call('HMGET', KEYS[1], 'own', 'det')
if not meta[2] then return {3} end
if meta[1] ~= '' or meta[2] == '' then return {0} end
local due = tonumber(meta[2]) + tonumber(ARGV[2])
if due >= tonumber(ARGV[1]) then return {2, tostring(due)} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('HSET', KEYS[6], 'reason', 'expired', 'at', ARGV[1])
return {1}
"""

# KEYS: tomb; ARGV: 1 older than.  Returns 1 if the tombstone was forgotten.
_FORGET_TOMBSTONE = """
local at = redis.call('HGET', KEYS[1], 'at')
if at and tonumber(at) < tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""

# KEYS: meta; ARGV: 1 node, 2 now, 3 snapshot with the session detached
# Returns {1, new version} when the session was attached to `node` and is detached now.
_ORPHAN = """
local meta = redis.call('HMGET', KEYS[1], 'own', 'ver')
if meta[1] ~= ARGV[1] then return {0} end
redis.call('HSET', KEYS[1], 'own', '', 'det', ARGV[2], 'snap', ARGV[3],
  'ver', tonumber(meta[2]) + 1)
return {1, tonumber(meta[2]) + 1}
"""


@dataclass(frozen=True, slots=True)
class LoadedSession:
    """One session read whole, at one version."""

    stored: StoredSession
    version: int
    attached: int
    """How many hellos and resumes this session has accepted (``att``)."""
    owner: str
    """The node it is attached to, or empty."""
    history: tuple[HistoryEntry, ...]
    context: AgentContextData | None


@dataclass(frozen=True, slots=True)
class Committed:
    """The answer to a commit: done (``ok``), or refused because the session's version is not
    the one expected (another writer came first)."""

    ok: bool
    version: int


class RedisStore:
    """The async store. ``durable`` is True when Redis persists (``appendonly yes``); the
    reference server does not check how Redis is configured: docs/cluster.md says what to set.
    """

    durable = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        # No retries: a commit retried after a timeout may already have been applied; the
        # caller decides (the version check makes a blind retry safe, not silent).
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._commit = self.client.register_script(_COMMIT)
        self._delete = self.client.register_script(_DELETE)
        self._expire = self.client.register_script(_EXPIRE)
        self._forget_tombstone = self.client.register_script(_FORGET_TOMBSTONE)
        self._orphan = self.client.register_script(_ORPHAN)
        self._highest_seq: dict[str, int] = {}
        """Per session, the highest replay seq stored as far as this process knows: only
        frames above it are sent (the script adds only those above what is stored anyway)."""

    # --- keys ----------------------------------------------------------------------------

    def _keys(self, sid: str) -> list[str]:
        base = f"{self.prefix}:{{{sid}}}"
        return [f"{base}:meta", f"{base}:replay", f"{base}:ids", f"{base}:hist", f"{base}:ctx"]

    def _tomb(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:tomb"

    @property
    def expiry_key(self) -> str:
        return f"{self.prefix}:expiry"

    @property
    def tombstones_key(self) -> str:
        return f"{self.prefix}:tombstones"

    @property
    def nodes_key(self) -> str:
        return f"{self.prefix}:nodes"

    def node_sessions_key(self, node: str) -> str:
        """The sessions a node has had attached (a hint for adopting a dead node's)."""
        return f"{self.prefix}:node:{node}:sessions"

    def node_channel(self, node: str) -> str:
        """The pub/sub channel on which a node hears that its sessions were taken over."""
        return f"{self.prefix}:node:{node}"

    # --- writing -------------------------------------------------------------------------

    def commit_args(
        self,
        change: Change,
        *,
        expected: int,
        owner: str,
        attach: int,
        now: float,
        attached: int = -1,
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the commit script for one change; with ``attached`` (not
        -1), only if the session's attach count is that too."""
        snapshot = change.snapshot
        sid = snapshot.session_id
        replay = change.replay
        highest = self._highest_seq.get(sid, 0)
        start = len(replay)
        while start > 0 and replay[start - 1][0] > highest:
            start -= 1
        frames = replay[start:]
        args: list[Any] = [
            expected,
            _encoder.encode(snapshot),
            snapshot.user_id,
            owner if snapshot.state == "attached" else "",
            attach,
            "" if snapshot.detached_at is None else repr(snapshot.detached_at),
            replay[0][0] if replay else 2**53,
            len(frames),
            len(change.new_request_ids),
            len(change.new_history),
            b"" if change.context is None else _encoder.encode(change.context),
            change.request_ids_from,
            repr(now),
            attached,
        ]
        for seq, frame in frames:
            args += [seq, b"%d|%s" % (seq, frame)]
        for request_id, seq in change.new_request_ids:
            args += [request_id, seq]
        for entry in change.new_history:
            args += [entry.index, _encoder.encode(entry)]
        return self._keys(sid), args

    async def commit(
        self,
        change: Change,
        *,
        expected: int,
        owner: str = "",
        attach: int = 0,
        now: float = 0.0,
        attached: int = -1,
    ) -> Committed:
        """Apply one change if the session is at version ``expected`` (0: a new session) and,
        with ``attached``, at that attach count."""
        keys, args = self.commit_args(
            change, expected=expected, owner=owner, attach=attach, now=now, attached=attached
        )
        return self.commit_result(change.snapshot.session_id, await self._commit(keys, args))

    def queue_commit(
        self,
        pipe: Any,
        change: Change,
        *,
        expected: int,
        owner: str,
        attach: int,
        now: float,
        attached: int = -1,
    ) -> None:
        """Queue the commit script on a pipeline (EVALSHA: the scripts are loaded first with
        ``load_scripts``, and again after a NOSCRIPT answer)."""
        keys, args = self.commit_args(
            change, expected=expected, owner=owner, attach=attach, now=now, attached=attached
        )
        pipe.evalsha(self._commit.sha, len(keys), *keys, *args)

    def queue_delete(
        self,
        pipe: Any,
        session_id: str,
        reason: str,
        at: float,
        expected: int,
        attached: int = -1,
    ) -> None:
        """Queue the delete script and the index updates that follow it on a pipeline."""
        keys = [*self._keys(session_id), self._tomb(session_id)]
        pipe.evalsha(self._delete.sha, len(keys), *keys, expected, reason, repr(at), attached)
        pipe.zadd(self.tombstones_key, {session_id: at})
        pipe.zrem(self.expiry_key, session_id)

    async def load_scripts(self) -> None:
        """Load every script into Redis's script cache (it is empty after a restart)."""
        scripts = (self._commit, self._delete, self._expire, self._forget_tombstone, self._orphan)
        for script in scripts:
            script.sha = await self.client.script_load(script.script)

    def commit_result(self, sid: str, reply: Any) -> Committed:
        """Read a commit script's answer; keep the highest stored seq of a success."""
        ok, version, *rest = reply
        if ok:
            self._highest_seq[sid] = int(rest[0])
            return Committed(ok=True, version=int(version))
        self._highest_seq.pop(sid, None)
        return Committed(ok=False, version=int(version))

    def forget_cache(self, sid: str) -> None:
        """Stop assuming anything about what is stored for ``sid``."""
        self._highest_seq.pop(sid, None)

    async def delete(
        self, session_id: str, reason: str, at: float, *, expected: int = -1, attached: int = -1
    ) -> bool:
        """Delete everything the session held and leave a tombstone, if its version is
        ``expected`` and its attach count ``attached`` (-1: whatever it is); True when this
        call deleted it."""
        keys = [*self._keys(session_id), self._tomb(session_id)]
        args: list[str | int] = [expected, reason, repr(at), attached]
        deleted = bool(await self._delete(keys=keys, args=args))
        self._highest_seq.pop(session_id, None)
        await self._after_delete(session_id, at)
        return deleted

    async def _after_delete(self, session_id: str, at: float) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.tombstones_key, {session_id: at})
            pipe.zrem(self.expiry_key, session_id)
            await pipe.execute()

    async def expire(self, session_id: str, now: float, resumable_s: float) -> float | None:
        """Expire the session if it is detached past its window. None: it expired now, by this
        call (of all the nodes' calls, exactly one sees this); a number: when it is due; inf:
        it is attached; nan: it is gone."""
        keys = [*self._keys(session_id), self._tomb(session_id)]
        reply = await self._expire(keys=keys, args=[repr(now), repr(resumable_s)])
        if int(reply[0]) == 1:
            self._highest_seq.pop(session_id, None)
            await self._after_delete(session_id, now)
            return None
        if int(reply[0]) == 2:
            return float(reply[1])
        return float("inf") if int(reply[0]) == 0 else float("nan")

    async def adopt_orphan(self, session_id: str, node: str, now: float) -> int | None:
        """Detach a session still attached to ``node`` (dead) as of ``now``; its new version,
        or None when it was not attached there."""
        loaded = await self.load(session_id)
        if loaded is None or loaded.owner != node:
            return None
        snapshot = msgspec.structs.replace(
            loaded.stored.snapshot, state="detached", detached_at=now
        )
        reply = await self._orphan(
            keys=self._keys(session_id)[:1], args=[node, repr(now), _encoder.encode(snapshot)]
        )
        return int(reply[1]) if int(reply[0]) == 1 else None

    async def sweep_tombstones(self, older_than: float) -> int:
        """Forget tombstones left before ``older_than``; return how many this call forgot."""
        old = await self.client.zrangebyscore(self.tombstones_key, "-inf", f"({older_than!r}")
        forgotten = 0
        for raw in old:
            sid = text(raw)
            forgotten += int(
                await self._forget_tombstone(keys=[self._tomb(sid)], args=[repr(older_than)])
            )
            await self.client.zrem(self.tombstones_key, sid)
        return forgotten

    # --- reading -------------------------------------------------------------------------

    async def load(self, session_id: str, *, with_history: bool = True) -> LoadedSession | None:
        """Read one session whole, atomically (MULTI/EXEC); None if there is none."""
        meta_key, replay_key, ids_key, hist_key, ctx_key = self._keys(session_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(meta_key)
            pipe.zrange(replay_key, 0, -1, withscores=True)
            pipe.zrange(ids_key, 0, -1, withscores=True)
            pipe.get(ctx_key)
            if with_history:
                pipe.zrange(hist_key, 0, -1)
            replies = await pipe.execute()
        meta: dict[bytes, bytes] = replies[0]
        if not meta or b"snap" not in meta:
            return None
        replay = tuple((int(score), member.split(b"|", 1)[1]) for member, score in replies[1])
        self._highest_seq[session_id] = replay[-1][0] if replay else 0
        ids = tuple((member.decode(), int(score)) for member, score in replies[2])
        context = None if replies[3] is None else _context_decoder.decode(replies[3])
        history = tuple(_entry_decoder.decode(m) for m in replies[4]) if with_history else ()
        return LoadedSession(
            stored=StoredSession(
                snapshot=_snapshot_decoder.decode(meta[b"snap"]),
                replay=replay,
                request_ids=ids,
            ),
            version=int(meta.get(b"ver", b"0")),
            attached=int(meta.get(b"att", b"0")),
            owner=meta.get(b"own", b"").decode(),
            history=history,
            context=context,
        )

    async def version(self, session_id: str) -> tuple[int, str] | None:
        """The session's version and owner, or None when it is not stored."""
        ver, own = await self.client.hmget(self._keys(session_id)[0], ["ver", "own"])
        return None if ver is None else (int(ver), text(own or b""))

    async def session_ids(self) -> list[str]:
        """Every stored session's id (a SCAN: for tools and tests, not for serving)."""
        found: list[str] = []
        pattern = f"{self.prefix}:{{*}}:meta"
        async for key in self.client.scan_iter(match=pattern, count=500):
            text = key.decode()
            found.append(text[text.index("{") + 1 : text.rindex("}")])
        return sorted(found)

    async def load_sessions(self) -> list[StoredSession]:
        """Every stored session (a SCAN: for tools and tests, not for serving)."""
        sessions = []
        for sid in await self.session_ids():
            loaded = await self.load(sid, with_history=False)
            if loaded is not None:
                sessions.append(loaded.stored)
        return sessions

    async def history(self, session_id: str, *, before: int | None, limit: int) -> HistoryPage:
        """A page of the conversation: the newest ``limit`` entries with index < ``before``."""
        hist_key = self._keys(session_id)[3]
        total = int(await self.client.zcard(hist_key))
        if limit <= 0:
            return page((), total, before, limit)
        top = "+inf" if before is None else f"({before}"
        members = await self.client.zrevrangebyscore(hist_key, top, "-inf", start=0, num=limit)
        entries = [_entry_decoder.decode(cast(bytes, m)) for m in members]
        return page(entries, total, before, limit)

    async def context(self, session_id: str) -> AgentContextData | None:
        """The agent's stored context, or None when there is none."""
        raw = await self.client.get(self._keys(session_id)[4])
        return None if raw is None else _context_decoder.decode(raw)

    async def tombstone(self, session_id: str) -> str | None:
        """Why a deleted session was deleted, or None."""
        raw = await self.client.hget(self._tomb(session_id), "reason")
        return None if raw is None else text(raw)

    async def holds(self, session_id: str) -> dict[str, int]:
        """How many items of each kind Redis holds for a session."""
        meta, replay, ids, hist, ctx = self._keys(session_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.exists(meta)
            pipe.zcard(replay)
            pipe.zcard(ids)
            pipe.zcard(hist)
            pipe.exists(ctx)
            counts = await pipe.execute()
        names = ("sessions", "replay", "request_ids", "history", "context")
        return {name: int(count) for name, count in zip(names, counts, strict=True)}

    async def ping(self) -> bool:
        """Does Redis answer?"""
        try:
            return bool(await self.client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()


class BlockingRedisStore:
    """The ``Store`` protocol (store/base.py) over ``RedisStore``, for code that is not async:
    tools, tests, and a harness inspecting a target's store. Its calls run on a private event
    loop in a thread of their own and block their caller; the reference server never uses it
    (it awaits ``RedisStore`` itself, see reference_server/cluster/)."""

    durable = True

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="redis-store", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def make() -> RedisStore:
            return RedisStore(url, prefix=prefix)

        self.store = self._run(make())
        self._versions: dict[str, int] = {}

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(DEFAULT_TIMEOUT_S * 5)

    def commit(self, change: Change) -> None:
        """Apply one change atomically; the version check is this process's own count."""
        sid = change.snapshot.session_id
        expected = self._versions.get(sid)
        if expected is None:
            found = self._run(self.store.version(sid))
            expected = 0 if found is None else found[0]
        result = self._run(self.store.commit(change, expected=expected, owner="tool"))
        assert result is not None
        if not result.ok:
            raise RuntimeError(f"session {sid} was changed by another writer")
        self._versions[sid] = result.version

    def load_sessions(self) -> list[StoredSession]:
        """Every stored session."""
        return self._run(self.store.load_sessions())

    def history(self, session_id: str, *, before: int | None, limit: int) -> HistoryPage:
        """A page of the conversation."""
        return self._run(self.store.history(session_id, before=before, limit=limit))

    def context(self, session_id: str) -> AgentContextData | None:
        """The agent's stored context, or None."""
        return self._run(self.store.context(session_id))

    def delete(self, session_id: str, reason: str, at: float) -> None:
        """Delete everything the session held and leave a tombstone."""
        self._run(self.store.delete(session_id, reason, at))
        self._versions.pop(session_id, None)

    def tombstone(self, session_id: str) -> str | None:
        """Why a deleted session was deleted, or None."""
        return self._run(self.store.tombstone(session_id))

    def sweep_tombstones(self, older_than: float) -> int:
        """Forget tombstones left before ``older_than``; return how many."""
        return self._run(self.store.sweep_tombstones(older_than))

    def holds(self, session_id: str) -> dict[str, int]:
        """How many items of each kind Redis holds for a session."""
        return self._run(self.store.holds(session_id))

    def close(self) -> None:
        """Close the client and stop the private loop."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._run(self.store.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def text(raw: Any) -> str:
    """A Redis reply (bytes: the client does not decode) as text."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


RedisSpec = tuple[str, int, int]


def is_redis_spec(spec: str) -> bool:
    """Does a ``--store`` spec name Redis?"""
    return spec.startswith("redis://")


def parse_redis_spec(spec: str) -> RedisSpec:
    """``redis://HOST:PORT/DB`` -> (host, port, db); ValueError names what is wrong."""
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        port = None
    path = parts.path.strip("/")
    if parts.scheme != "redis" or not parts.hostname or port is None:
        raise ValueError(f"bad store spec {spec!r}: expected redis://HOST:PORT/DB")
    if path and not path.isdigit():
        raise ValueError(f"bad store spec {spec!r}: the database is a number, got {path!r}")
    return parts.hostname, port, int(path or 0)


__all__ = [
    "BlockingRedisStore",
    "Committed",
    "LoadedSession",
    "RedisStore",
    "StoreUnavailable",
    "is_redis_spec",
    "parse_redis_spec",
    "text",
]
