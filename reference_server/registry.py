"""The sessions a server holds: restoring them, opening and resuming them, storing every change.

The registry owns the map from session id to ``SessionHost`` (a session with the connection
that carries it) and is the only writer of the store: every change is committed before anything
it produced is sent (the writer in ``connection.py`` sends only what a committed session queued).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection

from reference_server import agent, wire
from reference_server.auth import Credential
from reference_server.clock import Clock
from reference_server.faults import FaultPlan, ResumeInput
from reference_server.metrics import Metrics
from reference_server.protocol import (
    ResumeAccepted,
    ResumeRefused,
    ServerSession,
    SessionConfig,
    SessionState,
    negotiate_version,
    rejection,
)
from reference_server.protocol.messages import Hello, HistoryEntry, Resume
from reference_server.protocol.transitions import TERMINAL_SESSION_STATES
from reference_server.store import Change, Store

log = logging.getLogger("reference_server")

Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(eq=False)
class SessionHost:
    """A session with what the I/O layer keeps beside it: its connection and its agent."""

    session: ServerSession
    context: Any  # AgentContextData; Any keeps msgspec Structs out of dataclass eq
    history_len: int = 0
    ws: ServerConnection | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    first_frames: tuple[int, list[bytes]] = (0, [])
    """What the last hello or resume queued, for the connection with that id: sent before
    anything else the session queues (planted faults may have altered it)."""
    staging: bool = False
    """Set while the connection loop reacts to a frame that arrived with others: its commit is
    staged, and the staged changes are written as one, by ``SessionRegistry.write_staged`` or
    by the next commit, before anything they produced is sent (a request and the ack sent with
    it: one store write, not two)."""
    staged: StagedChange | None = None

    def take_first_frames(self, connection_id: int) -> list[bytes]:
        """The frames of the attach, once, if they are for this connection."""
        owner, frames = self.first_frames
        if not frames or owner != connection_id:
            return []
        self.first_frames = (0, [])
        return frames


@dataclass(slots=True)
class StagedChange:
    """What the staged commits of one session added, in order, until they are written."""

    new_ids: list[tuple[str, int]] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    context: Any = None


class SessionRegistry:
    """Every session the server holds, by id."""

    def __init__(
        self,
        *,
        store: Store,
        session_config: SessionConfig,
        clock: Clock,
        metrics: Metrics,
        faults: FaultPlan,
        spawn: Spawn,
        reauth_max_age_s: float,
        max_sessions: int | None = None,
        overload_retry_after_ms: int = 1000,
    ) -> None:
        self.store = store
        self.session_config = session_config
        self.clock = clock
        self.metrics = metrics
        self.faults = faults
        self.spawn = spawn
        self.reauth_max_age_s = reauth_max_age_s
        """Under ``require_reauth``, a credential issued this recently counts (§10)."""
        self.max_sessions = max_sessions
        self.overload_retry_after_ms = overload_retry_after_ms
        self.hosts: dict[str, SessionHost] = {}

    def load(self) -> None:
        """Restore every stored session (after a restart)."""
        now = self.clock.now()
        for stored in self.store.load_sessions():
            session = ServerSession.restore(
                stored.snapshot,
                replay=stored.replay,
                processed_ids=stored.request_ids,
                now=now,
                config=self.session_config,
            )
            context = self.store.context(session.session_id) or agent.new_context()
            total = self.store.history(session.session_id, before=None, limit=0).total
            host = SessionHost(session, context, history_len=total)
            self.faults.restored(host)
            self.hosts[session.session_id] = host

    # --- hello (§7.1) --------------------------------------------------------------------

    async def open(
        self, ws: ServerConnection, hello: Hello, credential: Credential, client_ip: str
    ) -> SessionHost | None:
        """Create a session for a hello and attach it to ``ws``, or reject the hello."""
        if not await self.admit(ws, hello):
            return None
        session = ServerSession(
            session_id=secrets.token_urlsafe(12),
            user_id=credential.subject,
            epoch=secrets.token_hex(4),
            client_ip=client_ip,
            now=self.clock.now(),
            config=self.session_config,
        )
        session.welcome(hello)
        host = SessionHost(session, agent.new_context(), ws=ws)
        self.hosts[session.session_id] = host
        self.commit(host, context=host.context)
        self.metrics.sessions_opened.inc()
        frames = self.faults.attached(session, session.data_to_send())
        host.first_frames = (session.connection_id, frames)
        return host

    async def admit(self, ws: ServerConnection, hello: Hello) -> bool:
        """May this hello have a session? If not, it was rejected: no common version (§4.1),
        or no room for another session (§14; resumes of held sessions are still served)."""
        if negotiate_version(hello.versions) is None:
            refused = rejection("unsupported_version", "no common protocol version")
            await wire.reject(ws, refused.rejected, refused.close_code)
            return False
        if self.max_sessions is not None and len(self.hosts) >= self.max_sessions:
            self.metrics.handshake_rejections.labels("overloaded").inc()
            refused = rejection(
                "overloaded",
                f"this server holds its maximum of {self.max_sessions} sessions",
                retry_after_ms=self.overload_retry_after_ms,
            )
            await wire.reject(ws, refused.rejected, refused.close_code)
            return False
        return True

    # --- resume (§7.2) -------------------------------------------------------------------

    async def resume(
        self, ws: ServerConnection, resume: Resume, credential: Credential, client_ip: str
    ) -> SessionHost | None:
        """Decide a resume; attach the session to ``ws``, or reject the resume."""
        started = time.perf_counter()
        now = self.clock.now()
        host = self.hosts.get(resume.session_id)
        if host is None:
            refused = self._gone(resume.session_id)
            self.metrics.resumes.labels(refused.rejected.reason).inc()
            await wire.reject(ws, refused.rejected, refused.close_code)
            return None
        session = host.session
        delay = self.faults.resume_delay_s(session)
        if delay:
            await asyncio.sleep(delay)
        checked = self.faults.resume_request(
            session, ResumeInput(resume, credential.subject, client_ip), now
        )
        fresh = now - credential.issued_at <= self.reauth_max_age_s
        previous_ip = session.client_ip
        previous_connection = session.connection_id
        result = session.resume(
            checked.resume,
            now=now,
            user_id=checked.subject,
            client_ip=checked.client_ip,
            credential_fresh=fresh,
        )
        if not isinstance(result, ResumeAccepted):
            self._refused(host, result, now)
            await wire.reject(ws, result.rejected, result.close_code)
            return None
        old = host.ws
        host.ws = ws
        if result.taken_over is not None and old is not None:
            self.metrics.takeovers.inc()
            closer = self.faults.taken_over(session, old, result.taken_over)
            unsent = host.take_first_frames(previous_connection)
            if closer is not None or unsent:
                self.spawn(wire.answer_then(old, unsent, closer))
        if result.ip_changed:
            self.metrics.ip_changes.labels("allowed").inc()
            log.warning(
                "session %s resumed from %s (was %s)", session.session_id, client_ip, previous_ip
            )
        frames = self.faults.attached(session, session.data_to_send())
        host.first_frames = (session.connection_id, frames)
        self.commit(host)
        self.metrics.resumes.labels(result.outcome).inc()
        self.metrics.replayed.inc(result.replayed)
        self.metrics.resume_latency.observe(time.perf_counter() - started)
        return host

    def _gone(self, session_id: str) -> ResumeRefused:
        """The answer to a resume of a session this server does not hold (§8.3)."""
        reason = self.store.tombstone(session_id)
        if reason == "revoked":
            return rejection("session_revoked", "session was revoked")
        if reason == "closed":  # §7.4: ended by bye
            return rejection("session_closed", f"session {session_id} was ended by bye")
        return rejection(
            "session_expired" if reason == "expired" else "session_unknown",
            f"no session {session_id}" + (f" ({reason})" if reason else ""),
        )

    def _refused(self, host: SessionHost, result: ResumeRefused, now: float) -> None:
        session = host.session
        self.metrics.resumes.labels(result.rejected.reason).inc()
        if result.rejected.reason in ("ip_denied", "reauth_required"):
            self.metrics.ip_changes.labels(result.rejected.reason).inc()
        if result.revoked:
            self.metrics.token_reuse.inc()
            log.warning("token reuse on session %s: revoked", session.session_id)
            if result.close_current is not None and host.ws is not None:
                unsent = host.take_first_frames(session.connection_id)
                closer = wire.close_with(host.ws, result.close_current)
                self.spawn(wire.answer_then(host.ws, unsent, closer))
            host.ws = None
            self.forget(host, "revoked", now)
        elif session.state in TERMINAL_SESSION_STATES:
            self.forget(host, session.state.value, now)
        else:
            self.commit(host)

    # --- connection loss -----------------------------------------------------------------

    def detach(self, host: SessionHost, ws: ServerConnection, now: float) -> None:
        """``ws`` is gone; if it still carried the session, the session detaches (§8)."""
        if host.ws is not ws:
            return
        host.ws = None
        if host.session.state is SessionState.ATTACHED:
            host.session.connection_lost(now)
            self.commit(host)

    # --- store ---------------------------------------------------------------------------

    def commit(
        self,
        host: SessionHost,
        *,
        new_ids: tuple[tuple[str, int], ...] = (),
        history: list[HistoryEntry] | None = None,
        context: Any = None,
    ) -> None:
        """Store the session's change before anything it produced is sent; while the host is
        staging, keep it for ``write_staged`` instead."""
        session = host.session
        if session.state in TERMINAL_SESSION_STATES:
            host.staged = None
            return
        staged = host.staged
        if host.staging or staged is not None:
            if staged is None:
                staged = host.staged = StagedChange()
            if new_ids:
                staged.new_ids.extend(new_ids)
            if history:
                staged.history.extend(history)
            if context is not None:
                staged.context = context
            if host.staging:
                return
            # Written now, with what was staged: the snapshot covers the staged changes too.
            host.staged = None
            new_ids, history, context = tuple(staged.new_ids), staged.history, staged.context
        self._write(host, new_ids=new_ids, history=history, context=context)

    def _write(
        self,
        host: SessionHost,
        *,
        new_ids: tuple[tuple[str, int], ...],
        history: list[HistoryEntry] | None,
        context: Any,
    ) -> None:
        """Store one change of a live session now (the store commits synchronously)."""
        session = host.session
        self.store.commit(
            Change(
                snapshot=session.snapshot(),
                replay=session.replay_buffer,
                new_request_ids=new_ids,
                request_ids_from=session.request_ids_from,
                new_history=history or (),
                context=context,
            )
        )

    def write_staged(self, host: SessionHost) -> None:
        """Write the staged changes as one commit, if there are any."""
        if host.staged is not None:
            self.commit(host)

    def forget(self, host: SessionHost, reason: str, now: float) -> None:
        """Drop a session that ended and leave its tombstone (§8.3)."""
        self.hosts.pop(host.session.session_id, None)
        self.faults.delete(self.store, host.session.session_id, reason, now)

    def count_by_state(self) -> dict[SessionState, int]:
        """How many sessions are in each state."""
        counts = dict.fromkeys(SessionState, 0)
        for host in self.hosts.values():
            counts[host.session.state] += 1
        return counts
