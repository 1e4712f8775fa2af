"""The reference server: the sans-I/O protocol over real WebSocket connections.

This layer only moves frames and owns time: it authenticates handshakes, finds or creates the
session for a hello or resume, feeds frames to the session's state machine, runs the agent,
commits every change to the store before sending what the change produced, and sweeps
heartbeats and expired sessions on a timer. The rules live in ``reference_server.protocol``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import weakref
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from reference_server import admin, agent
from reference_server.auth import AuthError, Credential, extract, verify
from reference_server.clock import Clock, SystemClock, VirtualClock
from reference_server.config import ServerConfig
from reference_server.metrics import Metrics
from reference_server.protocol import (
    ByeReceived,
    CloseCode,
    DuplicateRequest,
    ErrorCode,
    HeartbeatTimedOut,
    RemoteProtocolError,
    RequestReceived,
    ResumeAccepted,
    ServerSession,
    SessionConfig,
    SessionEvent,
    SessionExpired,
    SessionState,
    codec,
    negotiate_version,
    rejection,
)
from reference_server.protocol.messages import (
    AgentContext,
    ConversationHistory,
    Error,
    GetAgentContext,
    GetConversationHistory,
    Hello,
    HistoryEntry,
    ReplyChunk,
    Resume,
    ToolCall,
    ToolCallRecord,
    UserMessage,
)
from reference_server.protocol.session import CAPABILITY_VIRTUAL_CLOCK
from reference_server.protocol.transitions import TERMINAL_SESSION_STATES
from reference_server.store import Change, Store, open_store

log = logging.getLogger("reference_server")

ADMIN_PATH = "/admin"
TOMBSTONE_TTL_S = 3600.0


@dataclass(eq=False)
class SessionHost:
    """A session with what the I/O layer keeps beside it: its connection and its agent."""

    session: ServerSession
    context: Any  # AgentContextData; Any keeps msgspec Structs out of dataclass eq
    history_len: int = 0
    ws: ServerConnection | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    issued_tokens: list[str] = field(default_factory=list)  # planted fault reusable_token only


class ReferenceServer:
    """One reference server: ``async with ReferenceServer(config) as server: server.url``."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.clock: Clock = clock or (
            VirtualClock() if self.config.virtual_clock else SystemClock()
        )
        self.store = store or open_store(self.config.store)
        self.metrics = Metrics()
        self.hosts: dict[str, SessionHost] = {}
        self._credentials: weakref.WeakKeyDictionary[ServerConnection, Credential] = (
            weakref.WeakKeyDictionary()
        )
        self._server: Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._open_connections = 0
        capabilities = self.config.session.capabilities
        if self.clock.virtual and CAPABILITY_VIRTUAL_CLOCK not in capabilities:
            capabilities = (*capabilities, CAPABILITY_VIRTUAL_CLOCK)
        self.session_config = SessionConfig(
            windows=self.config.session.windows,
            heartbeat=self.config.session.heartbeat,
            limits=self.config.session.limits,
            ip_policy=self.config.session.ip_policy,
            capabilities=capabilities,
            used_tokens_kept=self.config.session.used_tokens_kept,
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> ReferenceServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Load stored sessions, listen, and start the sweeper."""
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
            self.hosts[session.session_id] = SessionHost(session, context, history_len=total)
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=self.session_config.limits.max_frame_bytes,
            ping_interval=None,  # heartbeats are the protocol's own (§9)
            open_timeout=self.config.handshake_timeout_s,
            close_timeout=2,
            compression=None,
            # A reconnect storm arrives all at once; asyncio's default backlog of 100 drops
            # SYNs and costs the retransmit second (measured by bench/storm.py).
            backlog=4096,
        )
        self._sweeper = asyncio.create_task(self._sweep_forever())
        self._update_session_gauges()
        log.info(
            "listening on %s (store %s, %s clock)", self.url, self.config.store, self._clock_name
        )

    async def stop(self) -> None:
        """Close every connection, stop the sweeper, close the store."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.store.close()

    @property
    def port(self) -> int:
        """The port the server listens on (useful with port 0)."""
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        return f"ws://{self.config.host}:{self.port}{self.config.path}"

    @property
    def _clock_name(self) -> str:
        return "virtual" if self.clock.virtual else "system"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- HTTP: health, metrics, handshake auth -------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            self._update_session_gauges()
            response = connection.respond(HTTPStatus.OK, self.metrics.render().decode())
            response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
            return response
        if path == ADMIN_PATH:
            return self._check_admin(connection, request)
        if path != self.config.path:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no such path: {path}\n")
        if self.open_connections >= self.config.max_connections:
            self.metrics.handshake_rejections.labels("overloaded").inc()
            response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "overloaded\n")
            response.headers["Retry-After"] = "1"
            return response
        try:
            raw, transport = extract(request.headers.get("Authorization"), request.path)
            credential = verify(
                raw, self.config.auth_secret, now=self.clock.now(), transport=transport
            )
        except AuthError as exc:
            self.metrics.handshake_rejections.labels("auth_failed").inc()
            log.info("handshake refused from %s: %s", _peer(connection), exc)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, f"{exc}\n")
            response.headers["WWW-Authenticate"] = 'Bearer realm="reference-server"'
            return response
        if transport == "query":
            log.warning(
                "credential for %s sent in the query string (less safe)", credential.subject
            )
        self._credentials[connection] = credential
        return None

    @property
    def open_connections(self) -> int:
        """Open WebSocket connections (a counter, not a scan: O(1) per handshake)."""
        return self._open_connections

    def _check_admin(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self.clock.virtual or not self.config.admin_token:
            return connection.respond(HTTPStatus.NOT_FOUND, "no admin channel on this server\n")
        expected = f"Bearer {self.config.admin_token}"
        if not secrets.compare_digest(request.headers.get("Authorization", ""), expected):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "admin token required\n")
        return None

    # --- connections ---------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path.split("?", 1)[0] == ADMIN_PATH:
            await self._admin(ws)
            return
        self.metrics.connections.inc()
        self.metrics.connections_total.inc()
        self._open_connections += 1
        try:
            host = await self._attach(ws)
            if host is not None:
                await self._serve(host, ws)
        except ConnectionClosed:
            pass
        finally:
            self.metrics.connections.dec()
            self._open_connections -= 1

    async def _attach(self, ws: ServerConnection) -> SessionHost | None:
        """Read the first frame (hello or resume) and attach a session to this connection."""
        credential = self._credentials[ws]
        try:
            first = await asyncio.wait_for(ws.recv(), self.config.handshake_timeout_s)
        except TimeoutError:
            await self._fail(
                ws, ErrorCode.UNEXPECTED_MESSAGE, "no hello or resume", CloseCode.PROTOCOL_ERROR
            )
            return None
        if isinstance(first, bytes):
            await self._fail(
                ws, ErrorCode.BINARY_FRAME, "text frames only", CloseCode.UNSUPPORTED_DATA
            )
            return None
        try:
            message = codec.decode_client(
                first, max_bytes=self.session_config.limits.max_frame_bytes
            )
        except RemoteProtocolError as exc:
            await self._fail(ws, exc.error_code, exc.message, CloseCode.PROTOCOL_ERROR)
            return None
        client_ip = self._client_ip(ws)
        if isinstance(message, Hello):
            return await self._open(ws, message, credential, client_ip)
        if isinstance(message, Resume):
            return await self._resume(ws, message, credential, client_ip)
        await self._fail(
            ws,
            ErrorCode.UNEXPECTED_MESSAGE,
            "first frame must be hello or resume",
            CloseCode.PROTOCOL_ERROR,
        )
        return None

    async def _open(
        self, ws: ServerConnection, hello: Hello, credential: Credential, client_ip: str
    ) -> SessionHost | None:
        if negotiate_version(hello.versions) is None:
            refused = rejection("unsupported_version", "no common protocol version")
            await self._reject(ws, refused.rejected, refused.close_code)
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
        self._commit(host, context=host.context)
        self.metrics.sessions_opened.inc()
        self._remember_token(host)
        return host

    async def _resume(
        self, ws: ServerConnection, resume: Resume, credential: Credential, client_ip: str
    ) -> SessionHost | None:
        started = time.perf_counter()
        now = self.clock.now()
        host = self.hosts.get(resume.session_id)
        if host is None:
            reason = self.store.tombstone(resume.session_id)
            refused = rejection(
                "session_expired" if reason == "expired" else "session_unknown",
                f"no session {resume.session_id}" + (f" ({reason})" if reason else ""),
            )
            if reason == "revoked":
                refused = rejection("session_revoked", "session was revoked")
            self.metrics.resumes.labels(refused.rejected.reason).inc()
            await self._reject(ws, refused.rejected, refused.close_code)
            return None
        session = host.session
        resume = self._planted_resume(host, resume)
        fresh = now - credential.issued_at <= self.config.reauth_max_age_s
        seen_ip = (
            session.client_ip if self.config.planted_fault == "ignore_ip_policy" else client_ip
        )
        previous_ip = session.client_ip
        result = session.resume(
            resume, now=now, user_id=credential.subject, client_ip=seen_ip, credential_fresh=fresh
        )
        if not isinstance(result, ResumeAccepted):
            self.metrics.resumes.labels(result.rejected.reason).inc()
            if result.rejected.reason == "ip_denied" or result.rejected.reason == "reauth_required":
                self.metrics.ip_changes.labels(result.rejected.reason).inc()
            if result.revoked:
                self.metrics.token_reuse.inc()
                log.warning("token reuse on session %s: revoked", session.session_id)
                if result.close_current is not None and host.ws is not None:
                    self._spawn(self._close_with(host.ws, result.close_current))
                host.ws = None
                self._forget(host, "revoked", now)
            elif session.state in TERMINAL_SESSION_STATES:
                self._forget(host, session.state.value, now)
            else:
                self._commit(host)
            await self._reject(ws, result.rejected, result.close_code)
            return None
        old = host.ws
        host.ws = ws
        if result.taken_over is not None and old is not None:
            self.metrics.takeovers.inc()
            self._spawn(self._close_with(old, result.taken_over))
        if result.ip_changed:
            self.metrics.ip_changes.labels("allowed").inc()
            log.warning(
                "session %s resumed from %s (was %s)", session.session_id, client_ip, previous_ip
            )
        self._plant_replay_fault(host)
        self._commit(host)
        self._remember_token(host)
        self.metrics.resumes.labels(result.outcome).inc()
        self.metrics.replayed.inc(result.replayed)
        self.metrics.resume_latency.observe(time.perf_counter() - started)
        return host

    async def _serve(self, host: SessionHost, ws: ServerConnection) -> None:
        """Run one attached connection until it closes or the session moves elsewhere."""
        connection_id = host.session.connection_id
        # The writer's batches and this loop's errors never interleave, and an error follows
        # whatever the session queued before it (a welcome, a resumed and its replay, replies).
        sending = asyncio.Lock()
        writer = asyncio.create_task(self._write(host, ws, connection_id, sending))
        host.wake.set()
        bucket = _TokenBucket(self.config.max_frames_per_s, self.config.frame_burst)
        bad_frames = 0

        async def answer_error(code: str, message: str, close_code: int | None = None) -> None:
            async with sending:
                await self._flush(host, ws, connection_id)
                if close_code is None:
                    await self._send_error(ws, code, message)
                else:
                    await self._fail(ws, code, message, close_code)

        try:
            while host.ws is ws:
                frame = await ws.recv()
                self.metrics.messages_in.inc()
                if host.ws is not ws:
                    break
                if not bucket.take(time.monotonic()):
                    await answer_error(
                        ErrorCode.RATE_LIMITED, "too many frames", CloseCode.POLICY_VIOLATION
                    )
                    break
                if isinstance(frame, bytes):
                    await answer_error(
                        ErrorCode.BINARY_FRAME, "text frames only", CloseCode.UNSUPPORTED_DATA
                    )
                    break
                try:
                    message = codec.decode_client(
                        frame, max_bytes=self.session_config.limits.max_frame_bytes
                    )
                    events = host.session.receive(message, self.clock.now())
                except RemoteProtocolError as exc:
                    self.metrics.errors.labels(exc.error_code).inc()
                    log.info("bad frame on session %s: %s", host.session.session_id, exc.message)
                    bad_frames += 1
                    if exc.error_code in _FATAL_ERRORS or bad_frames > self.config.max_bad_frames:
                        await answer_error(exc.error_code, exc.message, _close_code(exc))
                        break
                    await answer_error(exc.error_code, exc.message)
                    continue
                await self._react(host, events)
                host.wake.set()
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer
            if host.ws is ws:
                host.ws = None
                if host.session.state is SessionState.ATTACHED:
                    host.session.connection_lost(self.clock.now())
                    self._commit(host)

    async def _write(
        self, host: SessionHost, ws: ServerConnection, connection_id: int, sending: asyncio.Lock
    ) -> None:
        """The writer of one connection: sends the session's frames in order."""
        while True:
            await host.wake.wait()
            host.wake.clear()
            if host.ws is not ws or host.session.connection_id != connection_id:
                return
            async with sending:
                await self._flush(host, ws, connection_id)

    async def _flush(self, host: SessionHost, ws: ServerConnection, connection_id: int) -> None:
        """Send what the session queued, if this connection still carries it."""
        if host.ws is ws and host.session.connection_id == connection_id:
            for frame in host.session.data_to_send():
                await ws.send(frame, text=True)
                self.metrics.messages_out.inc()
                if self.config.chunk_delay_s and frame.startswith(b'{"type":"reply_chunk"'):
                    await asyncio.sleep(self.config.chunk_delay_s)

    # --- application ---------------------------------------------------------------------

    async def _react(self, host: SessionHost, events: list[SessionEvent]) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._answer(host, event)
            elif isinstance(event, DuplicateRequest):
                self._commit(host, new_ids=())
            elif isinstance(event, ByeReceived):
                self._forget(host, "closed", self.clock.now())
                if host.ws is not None:
                    self._spawn(host.ws.close(CloseCode.NORMAL, "bye"))
                host.ws = None
        if not events:
            self._commit(host)

    def _answer(self, host: SessionHost, event: RequestReceived) -> None:
        session, request = host.session, event.request
        if isinstance(request, UserMessage):
            turn = agent.respond(host.context, request.id, request.text)
            for call in turn.tool_calls:
                session.send(partial(_tool_call, in_reply_to=request.id, call=call))
            last = len(turn.chunks) - 1
            for index, text in enumerate(turn.chunks):
                session.send(
                    partial(
                        _chunk, in_reply_to=request.id, index=index, text=text, final=index == last
                    )
                )
            history = [
                HistoryEntry(
                    index=host.history_len, role="user", message_id=request.id, text=request.text
                ),
                HistoryEntry(
                    index=host.history_len + 1, role="agent", message_id=request.id, text=turn.reply
                ),
            ]
            host.history_len += 2
            host.context = turn.context
            self._commit(host, new_ids=(request.id,), history=history, context=turn.context)
        elif isinstance(request, GetConversationHistory):
            started = time.perf_counter()
            page = self.store.history(
                session.session_id, before=request.before, limit=max(0, request.limit)
            )
            elapsed = time.perf_counter() - started
            self.metrics.history_latency.labels("history").observe(elapsed)
            session.send(
                lambda seq: ConversationHistory(
                    seq=seq,
                    in_reply_to=request.id,
                    entries=page.entries,
                    total=page.total,
                    next_before=page.next_before,
                    retrieval_ms=round(elapsed * 1000, 3),
                )
            )
            self._commit(host, new_ids=(request.id,))
        elif isinstance(request, GetAgentContext):
            started = time.perf_counter()
            context = self.store.context(session.session_id) or agent.new_context()
            elapsed = time.perf_counter() - started
            self.metrics.history_latency.labels("agent_context").observe(elapsed)
            session.send(
                lambda seq: AgentContext(
                    seq=seq,
                    in_reply_to=request.id,
                    context=context,
                    retrieval_ms=round(elapsed * 1000, 3),
                )
            )
            self._commit(host, new_ids=(request.id,))

    # --- store ---------------------------------------------------------------------------

    def _commit(
        self,
        host: SessionHost,
        *,
        new_ids: tuple[str, ...] = (),
        history: list[HistoryEntry] | None = None,
        context: Any = None,
    ) -> None:
        """Store the session's change before anything it produced is sent."""
        session = host.session
        if session.state in TERMINAL_SESSION_STATES:
            return
        self.store.commit(
            Change(
                snapshot=session.snapshot(),
                replay=session.replay_buffer,
                new_request_ids=new_ids,
                new_history=history or (),
                context=context,
            )
        )

    def _forget(self, host: SessionHost, reason: str, now: float) -> None:
        self.hosts.pop(host.session.session_id, None)
        self.store.delete(host.session.session_id, reason, now)

    # --- time: heartbeats and expiry -----------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval_s)
            try:
                self.sweep()
            except Exception:  # a sweep must never kill the sweeper
                log.exception("sweep failed")

    def sweep(self) -> None:
        """Run heartbeats and expiry for every session once, at the clock's current time."""
        now = self.clock.now()
        for host in list(self.hosts.values()):
            session = host.session
            if self.config.planted_fault == "never_expire" and session.detached_at is not None:
                session.detached_at = now
            for event in session.tick(now):
                if isinstance(event, HeartbeatTimedOut):
                    self.metrics.heartbeat_timeouts.inc()
                    ws, host.ws = host.ws, None
                    session.connection_lost(now)
                    self._commit(host)
                    if ws is not None:
                        self._spawn(ws.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout"))
                elif isinstance(event, SessionExpired):
                    self.metrics.expirations.inc()
                    self._forget(host, "expired", now)
            if host.ws is not None and session.has_data_to_send:
                host.wake.set()
        self.store.sweep_tombstones(now - TOMBSTONE_TTL_S)
        self._update_session_gauges()

    def _update_session_gauges(self) -> None:
        counts = dict.fromkeys(SessionState, 0)
        for host in self.hosts.values():
            counts[host.session.state] += 1
        for state, count in counts.items():
            self.metrics.sessions.labels(state.value).set(count)

    # --- admin ---------------------------------------------------------------------------

    async def _admin(self, ws: ServerConnection) -> None:
        assert isinstance(self.clock, VirtualClock)
        clock = self.clock
        async for frame in ws:
            try:
                request = admin.request_decoder.decode(frame)
            except Exception as exc:  # msgspec raises DecodeError or ValidationError
                await ws.send(admin.encoder.encode(admin.AdminError(message=str(exc))), text=True)
                continue
            if isinstance(request, admin.AdvanceClock):
                if request.seconds < 0:
                    await ws.send(
                        admin.encoder.encode(admin.AdminError(message="seconds < 0")), text=True
                    )
                    continue
                clock.advance(request.seconds)
                log.info("clock advanced by %.3f s", request.seconds)
                self.sweep()
            reply = admin.ClockState(now=clock.now(), offset=clock.offset)
            await ws.send(admin.encoder.encode(reply), text=True)

    # --- small helpers -------------------------------------------------------------------

    def _client_ip(self, ws: ServerConnection) -> str:
        """The socket peer, or X-Forwarded-For's nearest untrusted hop from a trusted proxy."""
        peer = _peer(ws)
        assert ws.request is not None
        forwarded = ws.request.headers.get("X-Forwarded-For")
        if not forwarded or not self.config.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.config.trusts(hop):
                return hop
        return hops[0] if hops else peer

    async def _reject(self, ws: ServerConnection, rejected: Any, close_code: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(codec.encode(rejected), text=True)
            await _close(ws, close_code, rejected.reason)

    async def _fail(self, ws: ServerConnection, code: str, message: str, close_code: int) -> None:
        self.metrics.errors.labels(code).inc()
        with contextlib.suppress(ConnectionClosed):
            await self._send_error(ws, code, message)
            await _close(ws, close_code, code)

    async def _send_error(self, ws: ServerConnection, code: str, message: str) -> None:
        await ws.send(codec.encode(Error(code=code, message=message[:500])), text=True)

    async def _close_with(self, ws: ServerConnection, closing: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(codec.encode(closing), text=True)
            await ws.close(closing.code, closing.reason)  # its own reader keeps draining

    # --- planted faults (for testing harnesses only) ---------------------------------------

    def _remember_token(self, host: SessionHost) -> None:
        if self.config.planted_fault != "reusable_token":
            return
        frames = host.session.data_to_send()
        first = codec.decode_server(frames[0]) if frames else None
        token = getattr(first, "resume_token", None)
        if token:
            host.issued_tokens.append(token)
        host.session._outbox[:0] = frames  # put them back, in order

    def _planted_resume(self, host: SessionHost, resume: Resume) -> Resume:
        if (
            self.config.planted_fault == "reusable_token"
            and resume.resume_token in host.issued_tokens
        ):
            # Broken on purpose: any token ever issued works, as if tokens never rotated.
            current = host.issued_tokens[-1]
            return Resume(
                versions=resume.versions,
                session_id=resume.session_id,
                resume_token=current,
                epoch=resume.epoch,
                last_seq=resume.last_seq,
            )
        return resume

    def _plant_replay_fault(self, host: SessionHost) -> None:
        fault = self.config.planted_fault
        if fault not in ("skip_replay", "duplicate_replay"):
            return
        outbox = host.session._outbox
        if len(outbox) < 2:  # resumed only: nothing replayed to break
            return
        if fault == "skip_replay":
            del outbox[1]
        else:
            outbox.insert(1, outbox[1])


def _chunk(seq: int, *, in_reply_to: str, index: int, text: str, final: bool) -> ReplyChunk:
    return ReplyChunk(seq=seq, in_reply_to=in_reply_to, chunk_index=index, text=text, final=final)


def _tool_call(seq: int, *, in_reply_to: str, call: ToolCallRecord) -> ToolCall:
    return ToolCall(seq=seq, in_reply_to=in_reply_to, call=call)


_FATAL_ERRORS = frozenset(
    {ErrorCode.SEQUENCE_GAP, ErrorCode.UNEXPECTED_MESSAGE, ErrorCode.FRAME_TOO_LARGE}
)


def _close_code(exc: RemoteProtocolError) -> int:
    return (
        int(exc.close_code) if exc.error_code in _FATAL_ERRORS else int(CloseCode.POLICY_VIOLATION)
    )


async def _close(ws: ServerConnection, code: int, reason: str) -> None:
    """Close, reading (and dropping) what the peer still sends meanwhile: a peer that keeps
    sending would otherwise fill the receive queue, hide its close frame, and hold the
    connection for the whole close timeout."""
    closing = asyncio.ensure_future(ws.close(code, reason))
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(2):
            while not closing.done():
                await ws.recv()
    await closing


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "unknown"


class _TokenBucket:
    """Flood control: ``rate`` frames per second with bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.last = float(burst), time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
