"""Hello and resume against Redis, for a node of a cluster (docs/cluster.md, protocol §7.5).

The node holds in ``hosts`` only the sessions attached to it. A resume always loads its
session from Redis, whole and at one version, decides it with the protocol's state machine
exactly as a single server would, and commits the decision with that version as the
condition. If another writer committed first, the resume is decided again on what it wrote,
unless that writer accepted another resume of the session: then this resume lost a race and
is answered ``rejected`` ``overloaded`` with a retry hint, having consumed nothing (§7.5).

A node whose commit is refused because of the version has lost the session to another node:
it closes its connection with ``closing`` 4005 if Redis's tombstone says the session was
revoked, 4001 otherwise, as it does when the other node's pub/sub message (``signals``)
reaches it first. A connection closed so gets first the ``welcome`` or ``resumed`` it was
given, if that was not written yet: one server deciding in order would have sent it.

A node whose commit Redis did not answer cannot know whether it was stored: it drops the
session and closes with 1011, and the client's resume reads from Redis whatever is true.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from websockets.asyncio.server import ServerConnection

from reference_server import agent, wire
from reference_server.auth import Credential
from reference_server.faults import ResumeInput
from reference_server.protocol import (
    CloseCode,
    ErrorCode,
    ResumeAccepted,
    ResumeRefused,
    SessionState,
    rejection,
)
from reference_server.protocol.messages import (
    AgentContextData,
    Closing,
    Hello,
    HistoryEntry,
    Resume,
)
from reference_server.protocol.transitions import TERMINAL_SESSION_STATES
from reference_server.registry import SessionHost, SessionRegistry
from reference_server.store.base import Change, HistoryPage, StoredSession, page
from reference_server.store.redis import Committed, LoadedSession, RedisStore

from .held import HeldSession
from .link import STORE_ERRORS, StoreLink
from .writer import CommitOp, DeleteOp, Op, Result, StoreWriter

log = logging.getLogger("reference_server")

RESUME_ATTEMPTS = 5
"""Decisions of one resume against a session that other writers keep changing, at most."""
RACE_RETRY_AFTER_MS = 250
"""The retry hint of a resume that lost a race (§7.5): the winner's first frame comes sooner."""
STORE_RETRY_AFTER_MS = 1000
"""The retry hint of a hello or resume refused because Redis did not answer."""

TAKEN_OVER = Closing(
    code=CloseCode.SESSION_TAKEN_OVER,
    reason="session_taken_over",
    message="another connection resumed this session",
)
REVOKED = Closing(
    code=CloseCode.SESSION_REVOKED,
    reason="session_revoked",
    message="a resume token of this session was reused",
)

T = TypeVar("T")

Publish = Callable[[str, str, int, int], Awaitable[None]]
"""(node, session id, attach count, close code): tell a node to drop its older connection."""


@dataclass(eq=False)
class ClusterHost(SessionHost):
    """A session attached to this node, with what the node knows of its place in Redis."""

    history: list[HistoryEntry] = field(default_factory=list)
    """The whole conversation, read at the attach and kept as it is committed: while the
    session is attached here, this node is its only writer."""
    version: int = 0
    """The session's version in Redis after the last commit Redis answered."""
    enqueued: int = 0
    """The version the next queued commit expects (the last one queued will produce)."""
    attached: int = 0
    """Which accepted hello or resume this is (Redis's ``att`` after it)."""
    lost: bool = False
    """The node no longer holds the session: nothing more is written for it."""


class ClusterRegistry(SessionRegistry):
    """The sessions attached to this node; every other one is in Redis."""

    def __init__(self, *, redis: RedisStore, node_id: str, link: StoreLink, **kwargs: Any) -> None:
        super().__init__(store=ClusterStore(self), **kwargs)
        self.redis = redis
        self.node_id = node_id
        self.link = link
        self.writer = StoreWriter(
            store=redis,
            node_id=node_id,
            on_done=self._done,
            now=self.clock.now,
            timeout_s=redis.timeout_s,
            link=link,
        )
        self.publish: Publish | None = None
        self._early = EarlySignals()
        self.race_losses = 0
        """Resumes answered ``overloaded`` because another resume of their session won."""

    def load(self) -> None:
        """Nothing to restore: sessions are read from Redis when a resume asks for them."""

    # --- hello (§7.1) --------------------------------------------------------------------

    async def open(
        self, ws: ServerConnection, hello: Hello, credential: Credential, client_ip: str
    ) -> SessionHost | None:
        """Create a session for a hello, store it, and attach it to ``ws``."""
        if not await self.admit(ws, hello):  # max_sessions counts this node's sessions
            return None
        session = HeldSession(
            session_id=secrets.token_urlsafe(12),
            user_id=credential.subject,
            epoch=secrets.token_hex(4),
            client_ip=client_ip,
            now=self.clock.now(),
            config=self.session_config,
        )
        session.welcome(hello)
        host = ClusterHost(session, agent.new_context(), ws=ws, attached=1)
        frames = session.claim()
        try:
            committed = await self._wait(
                CommitOp(host, self._change(host, context=host.context), [], 0, attach=1)
            )
        except STORE_ERRORS as exc:
            await self._store_down(ws, exc)
            return None
        if not committed.ok:  # 96 random bits collided: say so rather than share a session
            await self._overloaded(ws, "session id already in use")
            return None
        host.version = host.enqueued = committed.version
        host.first_frames = (session.connection_id, self.faults.attached(session, frames))
        self._hold(host)
        self.metrics.sessions_opened.inc()
        return host

    # --- resume (§7.2, §7.5) -------------------------------------------------------------

    async def resume(
        self, ws: ServerConnection, resume: Resume, credential: Credential, client_ip: str
    ) -> SessionHost | None:
        """Decide a resume on the session as Redis holds it; commit it on that version."""
        started = time.perf_counter()
        sid = resume.session_id
        seen_attach: int | None = None
        for attempt in range(RESUME_ATTEMPTS):
            try:
                loaded = await self._load(sid)
                if loaded is None:
                    refused = await self._gone_shared(sid)
            except STORE_ERRORS as exc:
                await self._store_down(ws, exc)
                return None
            if loaded is None:
                self.metrics.resumes.labels(refused.rejected.reason).inc()
                await wire.reject(ws, refused.rejected, refused.close_code)
                return None
            if seen_attach is not None and loaded.attached > seen_attach:
                await self._lost_race(ws, sid)
                return None
            seen_attach = loaded.attached
            try:
                host = await self._decide(
                    ws, resume, credential, client_ip, loaded, first=attempt == 0
                )
            except _ConflictError:
                continue
            except STORE_ERRORS as exc:
                await self._store_down(ws, exc)
                return None
            if host is not None:
                self.metrics.resume_latency.observe(time.perf_counter() - started)
            return host
        await self._overloaded(ws, "the session kept changing while this resume was decided")
        return None

    async def _decide(
        self,
        ws: ServerConnection,
        resume: Resume,
        credential: Credential,
        client_ip: str,
        loaded: LoadedSession,
        *,
        first: bool,
    ) -> ClusterHost | None:
        """One decision on one version; ``_ConflictError`` when another writer came first.
        The planted-fault pause (``resume_delay_s``) is taken once, in the first decision."""
        now = self.clock.now()
        stored = loaded.stored
        session = HeldSession.restore(
            stored.snapshot,
            replay=stored.replay,
            processed_ids=stored.request_ids,
            now=now,
            config=self.session_config,
        )
        host = ClusterHost(
            session,
            loaded.context or agent.new_context(),
            history_len=len(loaded.history),
            history=list(loaded.history),
            version=loaded.version,
            enqueued=loaded.version,
            attached=loaded.attached + 1,
        )
        # A node loads the session from Redis at every resume, as one server does once after
        # a restart: the planted faults of a load (``restored``) act here (docs/faults.md).
        self.faults.restored(host)
        delay = self.faults.resume_delay_s(session) if first else 0.0
        if delay:
            await asyncio.sleep(delay)
        checked = self.faults.resume_request(
            session, ResumeInput(resume, credential.subject, client_ip), now
        )
        previous_ip = session.client_ip
        result = session.resume(
            checked.resume,
            now=now,
            user_id=checked.subject,
            client_ip=checked.client_ip,
            credential_fresh=now - credential.issued_at <= self.reauth_max_age_s,
        )
        if not isinstance(result, ResumeAccepted):
            await self._refused_shared(host, loaded, result, now)
            await wire.reject(ws, result.rejected, result.close_code)
            return None
        assert isinstance(session, HeldSession)
        frames = self.faults.attached(session, session.claim())
        committed = await self._wait(
            CommitOp(host, self._change(host), [], loaded.version, attach=1)
        )
        if not committed.ok:
            raise _ConflictError
        host.version = host.enqueued = committed.version
        # Held here before anything is awaited: a takeover by a resume decided after this one
        # on another node then finds this connection to close (its message can come while
        # this node is still telling the old owner).
        if loaded.owner == self.node_id:
            self.metrics.takeovers.inc()
            self.evict(session.session_id, host.attached, CloseCode.SESSION_TAKEN_OVER)
        host.ws = ws
        host.first_frames = (session.connection_id, frames)
        self._hold(host)
        if loaded.owner and loaded.owner != self.node_id:  # §7.3: attached on another node
            self.metrics.takeovers.inc()
            await self._tell(loaded.owner, session.session_id, host.attached, TAKEN_OVER)
        if result.ip_changed:
            self.metrics.ip_changes.labels("allowed").inc()
            log.warning(
                "session %s resumed from %s (was %s)", session.session_id, client_ip, previous_ip
            )
        self.metrics.resumes.labels(result.outcome).inc()
        self.metrics.replayed.inc(result.replayed)
        return host

    async def _refused_shared(
        self, host: ClusterHost, loaded: LoadedSession, result: ResumeRefused, now: float
    ) -> None:
        """What a refusal does to the stored session: deletion when it ended (revoked,
        expired), nothing otherwise (§7.2: "none" leaves an attached session attached)."""
        session = host.session
        if session.state in TERMINAL_SESSION_STATES:
            deleted = await self._wait(
                DeleteOp(None, session.session_id, session.state.value, now, loaded.version)
            )
            if not deleted:
                raise _ConflictError  # changed meanwhile: decide again on what is there now
        self.metrics.resumes.labels(result.rejected.reason).inc()
        if result.rejected.reason in ("ip_denied", "reauth_required"):
            self.metrics.ip_changes.labels(result.rejected.reason).inc()
        if result.revoked:
            self.metrics.token_reuse.inc()
            log.warning("token reuse on session %s: revoked", session.session_id)
            if loaded.owner:
                await self._tell(loaded.owner, session.session_id, host.attached, REVOKED)

    async def _gone_shared(self, session_id: str) -> ResumeRefused:
        """The answer to a resume of a session Redis does not hold (§8.3)."""
        reason = await self._read(self.redis.tombstone(session_id))
        if reason == "revoked":
            return rejection("session_revoked", "session was revoked")
        if reason == "closed":
            return rejection("session_closed", f"session {session_id} was ended by bye")
        return rejection(
            "session_expired" if reason == "expired" else "session_unknown",
            f"no session {session_id}" + (f" ({reason})" if reason else ""),
        )

    async def _lost_race(self, ws: ServerConnection, session_id: str) -> None:
        """§7.5: another resume of this session was accepted while this one was decided."""
        self.race_losses += 1
        self.metrics.resumes.labels("overloaded").inc()
        log.info("resume of %s lost a race to another resume", session_id)
        refused = rejection(
            "overloaded",
            "another resume of this session was accepted at the same time; this one consumed "
            "nothing",
            retry_after_ms=RACE_RETRY_AFTER_MS,
        )
        await wire.reject(ws, refused.rejected, refused.close_code)

    async def _tell(self, node: str, session_id: str, attached: int, closing: Closing) -> None:
        """Have ``node`` close its connection of an older attach of the session."""
        if node == self.node_id:
            self.evict(session_id, attached, closing.code)
        elif self.publish is not None:
            try:
                await self.publish(node, session_id, attached, closing.code)
            except STORE_ERRORS as exc:  # its next commit is refused: it learns then
                log.warning("could not tell node %s about %s: %s", node, session_id, exc)

    def evict(self, session_id: str, attached: int, code: int) -> bool:
        """Drop this node's connection of ``session_id`` if it is of an attach older than
        ``attached``: closing 4001 (taken over) or 4005 (revoked). A signal for a session this
        node does not hold is remembered for a while: it may be about an attach whose commit
        this node has had answered but not yet acted on."""
        host = self.hosts.get(session_id)
        if not isinstance(host, ClusterHost):
            self._early.remember(session_id, attached, code)
            return False
        if host.attached >= attached:
            return False
        self.drop(host, _closing_for(code))
        return True

    def _hold(self, host: ClusterHost) -> None:
        """Hold an attached session here, unless a signal already said it moved on."""
        sid = host.session.session_id
        self.hosts[sid] = host
        early = self._early.take(sid)
        if early is not None and early[0] > host.attached:
            self.drop(host, _closing_for(early[1]))

    # --- connection loss -----------------------------------------------------------------

    def detach(self, host: SessionHost, ws: ServerConnection, now: float) -> None:
        """``ws`` is gone: store the detach; the session leaves this node's memory."""
        if host.ws is not ws:
            return
        super().detach(host, ws, now)
        if self.hosts.get(host.session.session_id) is host:
            del self.hosts[host.session.session_id]

    # --- store ---------------------------------------------------------------------------

    def _write(
        self,
        host: SessionHost,
        *,
        new_ids: tuple[tuple[str, int], ...],
        history: list[HistoryEntry] | None,
        context: Any,
    ) -> None:
        """Queue the session's change; what it produced is sent once Redis stored it."""
        if not isinstance(host, ClusterHost):
            return
        session = host.session
        if host.lost:
            # A refused commit lost the session to another writer; until its connection is
            # dropped (a tombstone read away), a frame it still reads must not be answered:
            # what the change produced is discarded, never stored, so never sent.
            if isinstance(session, HeldSession):
                session.claim()
            return
        for entry in history or ():
            _add_entry(host.history, entry)
        change = self._change(host, new_ids=new_ids, history=history, context=context)
        assert isinstance(session, HeldSession)
        expires_at = None
        if session.state is SessionState.DETACHED and session.detached_at is not None:
            expires_at = session.detached_at + self.session_config.windows.resumable_s
        session.pending += 1
        self.writer.submit(
            CommitOp(host, change, session.claim(), host.enqueued, expires_at=expires_at)
        )
        host.enqueued += 1

    def forget(self, host: SessionHost, reason: str, now: float) -> None:
        """Drop a session that ended; delete it from Redis and leave its tombstone (§8.3)."""
        sid = host.session.session_id
        if self.hosts.get(sid) is host:
            del self.hosts[sid]
        if not isinstance(host, ClusterHost) or host.lost:
            return
        host.lost = True
        self.writer.submit(DeleteOp(host, sid, reason, now, host.enqueued))

    def _change(
        self,
        host: ClusterHost,
        *,
        new_ids: tuple[tuple[str, int], ...] = (),
        history: list[HistoryEntry] | None = None,
        context: Any = None,
    ) -> Change:
        session = host.session
        return Change(
            snapshot=session.snapshot(),
            replay=session.replay_buffer,
            new_request_ids=new_ids,
            request_ids_from=session.request_ids_from,
            new_history=history or (),
            context=context,
        )

    async def _load(self, session_id: str) -> LoadedSession | None:
        return await self._read(self.redis.load(session_id))

    async def _read(self, read: Awaitable[T]) -> T:
        """One read of Redis, within the bound; its outcome goes to the store link."""
        return await self.link.timed("load", read, self.redis.timeout_s)

    async def _wait(self, op: CommitOp | DeleteOp) -> Any:
        """Queue an op and wait for Redis's answer (raising what the writer reported)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        op.done = future
        self.writer.submit(op)
        return await future

    def _done(self, op: Op, result: Result) -> None:
        """The writer's report on one op."""
        done: asyncio.Future[Any] | None = op.done
        if done is not None:
            if not done.done():
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(result)
            return
        if isinstance(op, DeleteOp):
            if isinstance(result, BaseException):
                log.warning("delete of %s not stored: %s", op.session_id, result)
            return
        host = op.host
        session = host.session
        assert isinstance(session, HeldSession)
        session.pending -= 1
        if host.lost:
            return
        if isinstance(result, Committed) and result.ok:
            host.version = result.version
            session.release(op.frames)
            if host.ws is not None and session.has_data_to_send:
                host.wake.set()
        elif isinstance(result, Committed):
            log.info("session %s was changed by another node: dropped here", op.host)
            host.lost = True  # nothing more from this node; why it lost it is looked up
            self.spawn(self._drop_refused(host))
        else:
            log.warning("session %s: the store did not answer (%s)", session.session_id, result)
            self.drop(host, None)

    async def _drop_refused(self, host: ClusterHost) -> None:
        """Close a connection whose commit the fence refused: another node revoked the session
        (4005, its tombstone says so) or took it over (4001). The pub/sub message that says
        which may come later, or never."""
        try:
            why = await self._read(self.redis.tombstone(host.session.session_id))
        except STORE_ERRORS:
            why = None
        self.drop(host, REVOKED if why == "revoked" else TAKEN_OVER)

    def drop(self, host: ClusterHost, closing: Closing | None) -> None:
        """This node stops holding the session: close its connection with ``closing``, or,
        when the store failed, with an ``internal`` error and 1011 (the client resumes)."""
        host.lost = True
        sid = host.session.session_id
        if self.hosts.get(sid) is host:
            del self.hosts[sid]
        self.redis.forget_cache(sid)
        ws, host.ws = host.ws, None
        if ws is None:
            return
        # Its welcome or resumed may not be written yet: it goes first (wire.answer_then).
        unsent = host.take_first_frames(host.session.connection_id)
        closer: Coroutine[Any, Any, None] | None
        if closing is TAKEN_OVER:  # §7.3, through the planted-fault hook as on one server
            closer = self.faults.taken_over(host.session, ws, closing)
        elif closing is not None:
            closer = wire.close_with(ws, closing)
        else:
            closer = wire.fail(
                ws,
                self.metrics,
                ErrorCode.INTERNAL,
                "the session store did not answer; resume",
                CloseCode.INTERNAL_ERROR,
            )
        if closer is not None or unsent:
            self.spawn(wire.answer_then(ws, unsent, closer))

    async def _store_down(self, ws: ServerConnection, exc: BaseException) -> None:
        log.warning("store unavailable: %s", exc or type(exc).__name__)
        await self._overloaded(ws, "the session store is unavailable", STORE_RETRY_AFTER_MS)

    async def _overloaded(
        self, ws: ServerConnection, message: str, retry_after_ms: int | None = None
    ) -> None:
        refused = rejection(
            "overloaded", message, retry_after_ms=retry_after_ms or self.overload_retry_after_ms
        )
        await wire.reject(ws, refused.rejected, refused.close_code)


def _closing_for(code: int) -> Closing:
    """The closing of a take-over or revoke signal's close code."""
    return REVOKED if code == CloseCode.SESSION_REVOKED else TAKEN_OVER


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed (the redis client can, while it
    closes a connection it was reading from), so a loop that caught it still ends."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class EarlySignals:
    """Take-over and revoke signals for sessions a node did not hold when they came, kept
    ``KEEP_S`` seconds (a commit's answer and the code that acts on it are one event-loop
    turn apart; a signal read in between must still close the connection it was about)."""

    KEEP_S = 10.0

    def __init__(self) -> None:
        self._signals: dict[str, tuple[int, int, float]] = {}

    def remember(self, session_id: str, attached: int, code: int) -> None:
        now = time.monotonic()
        while self._signals:  # oldest first: drop what is past its time
            first = next(iter(self._signals))
            if now - self._signals[first][2] < self.KEEP_S:
                break
            del self._signals[first]
        kept = self._signals.pop(session_id, None)
        if kept is None or kept[0] < attached:
            self._signals[session_id] = (attached, code, now)
        else:
            self._signals[session_id] = kept

    def take(self, session_id: str) -> tuple[int, int] | None:
        """(attach, close code) of a signal kept for ``session_id``, once."""
        kept = self._signals.pop(session_id, None)
        if kept is None or time.monotonic() - kept[2] >= self.KEEP_S:
            return None
        return kept[0], kept[1]


class _ConflictError(Exception):
    """Another writer changed the session between its load and this decision's commit."""


class ClusterStore:
    """The ``Store`` the application reads: the conversation and context of the sessions
    attached to this node, as they are kept beside them (``ClusterHost``). Writes go through
    the registry; the node never lists Redis's sessions."""

    durable = True

    def __init__(self, registry: ClusterRegistry) -> None:
        self._registry = registry

    def _host(self, session_id: str) -> ClusterHost | None:
        host = self._registry.hosts.get(session_id)
        return host if isinstance(host, ClusterHost) else None

    def commit(self, change: Change) -> None:
        raise NotImplementedError("the cluster registry commits through its writer")

    def load_sessions(self) -> list[StoredSession]:
        return []

    def history(self, session_id: str, *, before: int | None, limit: int) -> HistoryPage:
        host = self._host(session_id)
        entries = host.history if host is not None else []
        end = len(entries) if before is None else bisect.bisect_left(entries, before, key=_index)
        chosen = entries[max(0, end - limit) : end] if limit > 0 else []
        return page(chosen, len(entries), before, limit)

    def context(self, session_id: str) -> AgentContextData | None:
        host = self._host(session_id)
        return None if host is None else host.context

    def delete(self, session_id: str, reason: str, at: float) -> None:
        raise NotImplementedError("the cluster registry deletes through its writer")

    def tombstone(self, session_id: str) -> str | None:
        return None

    def sweep_tombstones(self, older_than: float) -> int:
        return 0

    def holds(self, session_id: str) -> dict[str, int]:
        raise NotImplementedError("ask RedisStore.holds")

    def close(self) -> None:
        """Nothing: the node closes Redis."""


def _index(entry: HistoryEntry) -> int:
    return entry.index


def _add_entry(history: list[HistoryEntry], entry: HistoryEntry) -> None:
    """Keep the conversation in index order; an entry with a stored index replaces it."""
    if not history or history[-1].index < entry.index:
        history.append(entry)
        return
    at = bisect.bisect_left(history, entry.index, key=_index)
    if at < len(history) and history[at].index == entry.index:
        history[at] = entry
    else:
        history.insert(at, entry)
