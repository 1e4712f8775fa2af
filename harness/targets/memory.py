"""An in-memory reference server and the network to it: a target with no sockets.

``MemoryWorld`` runs the reference protocol's own state machines (``ServerSession``), the
reference agent, the one codec and the reference server's ``MemoryStore``, and answers hellos,
resumes, user messages, history and context requests the way ``reference_server.app`` does
(same rejections, close codes, take-overs, heartbeats, expiry, metrics names). Between it and
each client is a ``Link``: two ordered pipes of encoded frames (``upstream``: client to server,
``downstream``: server to client, as Toxiproxy names them) that the world's fault layer
(``harness.faults.memory``) can cut, blackhole, delay or reset, and that a test can tamper with
(lose or double a frame on its way to the client) to prove that a checker catches it.

Time: the server's clock is virtual and moves only with ``advance`` (as the reference server's
``--virtual-clock``); delays on a link (latency, bandwidth, slicing) are real time on the event
loop, as Toxiproxy's are.

What it does not model (so ``MemoryTarget`` does not claim it): the HTTP upgrade (TLS, headers
other than X-Forwarded-For, 503 overload), flood control, planted faults and server options of
the embedded reference server, latency histograms, and the ``slow_close`` toxic.

``MemoryTarget`` is the ``Target`` over a world; ``harness.driver.memory`` is its driver.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import itertools
import math
import os
import random
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Literal, Protocol

from reference_server import agent
from reference_server.protocol import (
    ByeReceived,
    CloseCode,
    DuplicateRequest,
    ErrorCode,
    HeartbeatTimedOut,
    RemoteProtocolError,
    RequestReceived,
    ResumeAccepted,
    ResumeRefused,
    ServerSession,
    SessionConfig,
    SessionEvent,
    SessionExpired,
    SessionState,
    codec,
    negotiate_version,
    rejection,
)
from reference_server.protocol.addresses import canonical
from reference_server.protocol.messages import (
    AgentContext,
    AgentContextData,
    Closing,
    ConversationHistory,
    Error,
    GetAgentContext,
    GetConversationHistory,
    Hello,
    HistoryEntry,
    Rejected,
    ReplyChunk,
    Resume,
    ServerMessage,
    ToolCall,
    ToolCallRecord,
    UserMessage,
)
from reference_server.protocol.pair import counting_tokens
from reference_server.protocol.session import CAPABILITY_VIRTUAL_CLOCK
from reference_server.protocol.transitions import TERMINAL_SESSION_STATES
from reference_server.store import Change, MemoryStore

__all__ = [
    "SUPPORTED_TOXICS",
    "Direction",
    "Endpoint",
    "Link",
    "LinkRefusedError",
    "MemoryTarget",
    "MemoryWorld",
    "Tamper",
    "doubling",
    "find_world",
    "losing",
]

Direction = Literal["upstream", "downstream"]
"""``upstream``: client to server; ``downstream``: server to client (Toxiproxy's words)."""

ABNORMAL_CLOSURE: Final = 1006
"""RFC 6455 §7.4.1: what a client reports when the connection ended without a close frame."""
PROXY_PEER: Final = "127.0.0.1"
"""The address the server sees for a client that comes through the fault layer (the proxy)."""
TOMBSTONE_TTL_S: Final = 3600.0
SUPPORTED_TOXICS: Final = ("latency", "bandwidth", "timeout", "reset_peer", "slicer", "limit_data")
"""Toxiproxy toxics the world's network can play; ``slow_close`` is the one it cannot."""

# As reference_server.app: these errors close the connection; others are answered and forgiven.
_FATAL_ERRORS: Final = frozenset(
    {ErrorCode.SEQUENCE_GAP, ErrorCode.UNEXPECTED_MESSAGE, ErrorCode.FRAME_TOO_LARGE}
)

Tamper = Callable[[bytes], Sequence[bytes]]
"""Maps one frame the server sends to the frames the client receives instead."""

_WORLDS: weakref.WeakValueDictionary[str, MemoryWorld] = weakref.WeakValueDictionary()
_world_ids = itertools.count(1)


def find_world(url: str) -> MemoryWorld | None:
    """The live world whose URL this is, if any."""
    return _WORLDS.get(url)


class LinkRefusedError(Exception):
    """A connection could not be opened: nobody listens (``status`` None), or the handshake
    was answered with an HTTP error ``status``."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Endpoint(Protocol):
    """The client end of a link: what the world hands it."""

    def frame_received(self, data: bytes) -> None:
        """One frame from the server, in order."""
        ...

    def link_closed(self, code: int | None) -> None:
        """The server or the network closed the connection (never called for the client's own
        close)."""
        ...


@dataclass(frozen=True, slots=True)
class _Item:
    """What travels on one pipe: a frame, or (``data`` None) the connection's close."""

    due: float
    data: bytes | None
    binary: bool = False
    code: int | None = None


@dataclass(eq=False)
class _Toxic:
    name: str
    kind: str
    stream: Direction
    attributes: dict[str, float]
    toxicity: float
    links: set[int] = field(default_factory=set)
    """The links it acts on (Toxiproxy draws each connection with probability ``toxicity``)."""


class Link:
    """One connection between a client endpoint and the world's server."""

    def __init__(
        self,
        world: MemoryWorld,
        link_id: int,
        endpoint: Endpoint,
        *,
        proxied: bool,
        peer: str,
        user: str,
        issued_at: float,
    ) -> None:
        self.world = world
        self.id = link_id
        self.endpoint = endpoint
        self.proxied = proxied
        """Whether it goes through the fault layer (toxics and ``down`` act on it)."""
        self.peer = peer
        """The client address the server sees (X-Forwarded-For already applied)."""
        self.user = user
        self.issued_at = issued_at
        self.pipes: dict[Direction, deque[_Item]] = {"upstream": deque(), "downstream": deque()}
        self.carried: dict[Direction, int] = {"upstream": 0, "downstream": 0}
        self.client_open = True
        self.server_open = True
        self.host: _Host | None = None
        self.bad_frames = 0
        self._last_due: dict[Direction, float] = {"upstream": 0.0, "downstream": 0.0}
        self._busy: dict[str, float] = {}

    def send(self, data: bytes, *, binary: bool = False) -> None:
        """The client sends one frame; nothing happens once its end is closed."""
        if self.client_open:
            self.world._enqueue(self, "upstream", data, binary=binary)
            self.world.kick()

    def close(self, how: Literal["close", "reset"]) -> None:
        """The client closes cleanly (what it sent arrives first) or resets (RST: what is in
        flight is lost); the server notices at once."""
        self.world._client_closes(self, how)


@dataclass(eq=False)
class _Host:
    """A session with what the server keeps beside it (reference_server.app's SessionHost)."""

    session: ServerSession
    context: AgentContextData
    history_len: int = 0
    link: Link | None = None


class MemoryWorld:
    """The reference server, its store, its virtual clock and its network, in memory."""

    def __init__(
        self,
        *,
        session: SessionConfig | None = None,
        start: float = 1_700_000_000.0,
        trusted_proxies: tuple[str, ...] = ("127.0.0.1/32",),
        reauth_max_age_s: float = 60.0,
        max_bad_frames: int = 20,
        seed: int | None = 0,
    ) -> None:
        base = session or SessionConfig()
        capabilities = base.capabilities
        if CAPABILITY_VIRTUAL_CLOCK not in capabilities:
            capabilities = (*capabilities, CAPABILITY_VIRTUAL_CLOCK)
        # What is advertised is what the world enforces (as reference_server.app does).
        self.session_config = dataclasses.replace(
            base, capabilities=capabilities, reauth_max_age_s=reauth_max_age_s
        )
        self.now = start
        """The server's virtual clock, in seconds."""
        self.trusted_proxies = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)
        self.reauth_max_age_s = reauth_max_age_s
        self.max_bad_frames = max_bad_frames
        self.random = random.Random(seed)
        self.url = f"memory://world-{next(_world_ids)}/ws"
        self.store = MemoryStore()
        self.hosts: dict[str, _Host] = {}
        self.links: list[Link] = []
        self.proxy_enabled = True
        self.toxics: dict[str, _Toxic] = {}
        self.tamper: Tamper | None = None
        """Set by a test to lose or double frames on their way to clients (``losing``,
        ``doubling``); None: the network carries what the server sends."""
        self.restarts = 0
        self.stopped = False
        self._counters: dict[tuple[str, str], float] = {}
        self._credentials: dict[str, tuple[str, float]] = {}
        self._tokens = counting_tokens(f"token-{self.url}")
        self._session_ids = itertools.count(1)
        self._link_ids = itertools.count(1)
        self._pumping = False
        self._again = False
        self._kick: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf
        self._later: set[asyncio.TimerHandle] = set()
        _WORLDS[self.url] = self

    # --- credentials and connections -------------------------------------------------------

    def credential_for(self, user: str) -> str:
        """A credential that logs in as ``user``, issued now (on the virtual clock)."""
        credential = f"memory-credential-{len(self._credentials) + 1}-{user}"
        self._credentials[credential] = (user, self.now)
        return credential

    def open(
        self,
        endpoint: Endpoint,
        *,
        credential: str,
        proxied: bool,
        source_ip: str | None = None,
        forwarded_for: str | None = None,
    ) -> Link:
        """Open a connection (the WebSocket handshake included); ``LinkRefusedError`` when the
        server is stopped, the proxy is down, or the credential is not one it issued."""
        if self.stopped:
            raise LinkRefusedError("connection refused: the server is stopped")
        if proxied and not self.proxy_enabled:
            raise LinkRefusedError("connection refused: the fault layer's proxy is down")
        login = self._credentials.get(credential)
        if login is None:
            self._count("ws_handshake_rejections_total", "auth_failed")
            raise LinkRefusedError("handshake refused: HTTP 401: unknown credential", status=401)
        peer = PROXY_PEER if proxied else (source_ip or "127.0.0.1")
        link = Link(
            self,
            next(self._link_ids),
            endpoint,
            proxied=proxied,
            peer=self._client_ip(peer, forwarded_for),
            user=login[0],
            issued_at=login[1],
        )
        self.links.append(link)
        self._count("ws_connections_opened_total")
        if proxied:
            for toxic in self.toxics.values():
                self._draw(toxic, link)
        return link

    def _client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The peer, or what a trusted proxy says in X-Forwarded-For, in canonical form, as the
        reference server decides it (§10.1): from the right, skip trusted proxies; the first
        other node is the client, or the last trusted one when that node is no address."""
        nearest = canonical(peer)
        if not forwarded_for or not self._trusts(nearest):
            return nearest
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if not _is_address(hop):
                return nearest
            if not self._trusts(hop):
                return canonical(hop)
            nearest = canonical(hop)
        return nearest

    def _trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    @property
    def open_connections(self) -> int:
        """Connections the server still holds (its ``ws_connections`` gauge)."""
        return sum(1 for link in self.links if link.server_open)

    # --- moving frames ---------------------------------------------------------------------

    def kick(self) -> None:
        """Have the network move frames soon (on the next turn of the event loop), as a socket
        would; at once when there is no running loop."""
        if self._kick is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.pump()
            return
        self._kick = loop.call_soon(self._kicked)

    def _kicked(self) -> None:
        self._kick = None
        self.pump()

    def pump(self) -> None:
        """Deliver every frame that is due, both ways, until nothing more moves now."""
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        try:
            while True:
                self._again = False
                moved = False
                now = _loop_time()
                for link in list(self.links):
                    moved |= self._deliver(link, "upstream", now)
                for link in list(self.links):
                    moved |= self._deliver(link, "downstream", now)
                if not (moved or self._again):
                    break
        finally:
            self._pumping = False
        self.links = [
            link
            for link in self.links
            if link.server_open or link.client_open or any(link.pipes.values())
        ]
        self._schedule()

    def _schedule(self) -> None:
        """Wake up when the next delayed frame is due."""
        heads = [p[0].due for link in self.links for p in link.pipes.values() if p]
        due = min(heads, default=math.inf)
        if due == math.inf or due >= self._timer_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = loop.call_at(due, self._timed)

    def _timed(self) -> None:
        self._timer, self._timer_due = None, math.inf
        self.pump()

    def _enqueue(
        self,
        link: Link,
        direction: Direction,
        data: bytes | None,
        *,
        binary: bool = False,
        code: int | None = None,
    ) -> None:
        """Put a frame (or the close) on a pipe, due when the link's toxics let it arrive."""
        items: list[bytes | None]
        if data is None:
            items = [None]
        elif direction == "downstream" and self.tamper is not None:
            items = [*self.tamper(data)]
        else:
            items = [data]
        for frame in items:
            due = self._due(link, direction, len(frame) if frame else 0)
            link.pipes[direction].append(_Item(due=due, data=frame, binary=binary, code=code))

    def _due(self, link: Link, direction: Direction, size: int) -> float:
        due = _loop_time()
        for toxic in self._acting(link, direction):
            a = toxic.attributes
            if toxic.kind == "latency":
                jitter = a.get("jitter", 0.0)
                due += max(0.0, a["latency"] + self.random.uniform(-jitter, jitter)) / 1000
            elif toxic.kind == "bandwidth":
                start = max(due, link._busy.get(toxic.name, 0.0))
                due = start + size / (max(1.0, a["rate"]) * 1000)
                link._busy[toxic.name] = due
            elif toxic.kind == "slicer" and size:
                slices = math.ceil(size / max(1.0, a["average_size"]))
                due += slices * a.get("delay", 0.0) / 1_000_000
        # One TCP stream each way: nothing overtakes what was sent before it.
        due = max(due, link._last_due[direction])
        link._last_due[direction] = due
        return due

    def _acting(self, link: Link, direction: Direction) -> list[_Toxic]:
        return [t for t in self.toxics.values() if t.stream == direction and link.id in t.links]

    def _deliver(self, link: Link, direction: Direction, now: float) -> bool:
        pipe = link.pipes[direction]
        moved = False
        while pipe and pipe[0].due <= now:
            item = pipe.popleft()
            moved = True
            passed = self._through_toxics(link, direction, item)
            if passed is None:
                continue
            if direction == "upstream":
                if link.server_open and passed.data is not None:
                    self._server_frame(link, passed)
            elif passed.data is None:
                self._close_client_side(link, passed.code)
            elif link.client_open:
                link.endpoint.frame_received(passed.data)
        return moved

    def _through_toxics(self, link: Link, direction: Direction, item: _Item) -> _Item | None:
        """What of ``item`` gets through the toxics acting on it now (None: nothing)."""
        size = len(item.data) if item.data is not None else 0
        for toxic in self._acting(link, direction):
            if toxic.kind == "timeout":
                if item.data is None:
                    # The close frame is lost too, but the TCP close gets through (Toxiproxy
                    # closes the other side when one side's input ends).
                    return _Item(due=item.due, data=None, code=ABNORMAL_CLOSURE)
                return None
            if toxic.kind == "reset_peer" and item.data is not None:
                self._cut(link)
                return None
            if toxic.kind == "limit_data" and link.carried[direction] + size > toxic.attributes.get(
                "bytes", 0.0
            ):
                self._cut(link)
                return None
        link.carried[direction] += size
        return item

    # --- closing ---------------------------------------------------------------------------

    def _client_closes(self, link: Link, how: Literal["close", "reset"]) -> None:
        if not link.client_open:
            return
        if how == "close":  # a FIN follows what the client sent; an RST overtakes it
            self._deliver(link, "upstream", math.inf)
        link.client_open = False
        for pipe in link.pipes.values():
            pipe.clear()
        self._close_server_side(link)

    def _server_closes(self, link: Link, code: int) -> None:
        """The server closes: its close follows what it already sent, on the downstream pipe."""
        if not link.server_open:
            return
        if link.client_open:
            self._enqueue(link, "downstream", None, code=code)
            self.kick()
        self._close_server_side(link)

    def _close_server_side(self, link: Link) -> None:
        if not link.server_open:
            return
        link.server_open = False
        host = link.host
        if host is not None and host.link is link:
            host.link = None
            if host.session.state is SessionState.ATTACHED:
                host.session.connection_lost(self.now)
                self._commit(host)

    def _close_client_side(self, link: Link, code: int | None) -> None:
        if not link.client_open:
            return
        link.client_open = False
        for pipe in link.pipes.values():
            pipe.clear()
        link.endpoint.link_closed(code)

    def _cut(self, link: Link) -> None:
        """The network breaks the connection: both ends learn at once; what is in flight is
        lost."""
        self._close_server_side(link)
        self._close_client_side(link, ABNORMAL_CLOSURE)

    # --- the fault layer's proxy -----------------------------------------------------------

    def proxy_down(self) -> None:
        """Cut every proxied connection and refuse new ones."""
        self.proxy_enabled = False
        for link in [link for link in self.links if link.proxied]:
            self._cut(link)

    def proxy_up(self) -> None:
        self.proxy_enabled = True

    def add_toxic(
        self,
        name: str,
        kind: str,
        attributes: dict[str, float],
        *,
        stream: Direction,
        toxicity: float = 1.0,
    ) -> None:
        """Act on proxied connections (those open now and those to come) as Toxiproxy's toxic
        ``kind`` does, with its attribute names and units; ``ValueError`` for one it lacks."""
        if kind not in SUPPORTED_TOXICS:
            raise ValueError(
                f"the memory network cannot play the {kind!r} toxic "
                f"(it plays {', '.join(SUPPORTED_TOXICS)})"
            )
        if name in self.toxics:
            raise ValueError(f"a toxic named {name!r} exists already")
        toxic = _Toxic(name, kind, stream, dict(attributes), toxicity)
        self.toxics[name] = toxic
        for link in self.links:
            if link.proxied and link.client_open:
                self._draw(toxic, link)

    def _draw(self, toxic: _Toxic, link: Link) -> None:
        if toxic.toxicity < 1.0 and self.random.random() >= toxic.toxicity:
            return
        toxic.links.add(link.id)
        after_ms = toxic.attributes.get("timeout", 0.0)
        if toxic.kind == "timeout" and after_ms > 0:
            self._call_later(after_ms / 1000, partial(self._timeout_closes, toxic, link))

    def _timeout_closes(self, toxic: _Toxic, link: Link) -> None:
        if self.toxics.get(toxic.name) is toxic:
            self._cut(link)

    def remove_toxic(self, name: str) -> None:
        """Remove a toxic; removing a ``timeout`` closes the connections it held (Toxiproxy's
        cleanup does)."""
        toxic = self.toxics.pop(name, None)
        if toxic is not None and toxic.kind == "timeout":
            for link in [link for link in self.links if link.id in toxic.links]:
                self._cut(link)
        self.kick()

    def heal(self) -> None:
        """Remove every toxic and bring the proxy up."""
        for name in list(self.toxics):
            self.remove_toxic(name)
        self.proxy_up()

    def _call_later(self, delay: float, callback: Callable[[], None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def run() -> None:
            self._later.discard(handle)
            callback()

        handle = loop.call_later(delay, run)
        self._later.add(handle)

    # --- the server: frames in ---------------------------------------------------------------

    def _server_frame(self, link: Link, item: _Item) -> None:
        assert item.data is not None
        self._count("ws_messages_received_total")
        limit = self.session_config.limits.max_frame_bytes
        if len(item.data) > limit:  # the WebSocket layer refuses it before the server sees it
            self._server_closes(link, CloseCode.MESSAGE_TOO_BIG)
            return
        host = link.host
        if host is None:
            self._first_frame(link, item)
            return
        if host.link is not link:
            return  # the session moved to another connection; this one is closing
        if item.binary:
            self._answer_error(
                link, ErrorCode.BINARY_FRAME, "text frames only", CloseCode.UNSUPPORTED_DATA
            )
            return
        try:
            message = codec.decode_client(item.data, max_bytes=limit)
            events = host.session.receive(message, self.now)
        except RemoteProtocolError as exc:
            self._count("ws_protocol_errors_total", exc.error_code)
            link.bad_frames += 1
            fatal = exc.error_code in _FATAL_ERRORS or link.bad_frames > self.max_bad_frames
            close = _close_code(exc) if fatal else None
            self._answer_error(link, exc.error_code, exc.message, close)
            return
        self._react(host, events)
        self._flush(host)

    def _first_frame(self, link: Link, item: _Item) -> None:
        """A hello or a resume, as reference_server.app's ``_attach`` reads it."""
        assert item.data is not None
        if item.binary:
            self._fail(link, ErrorCode.BINARY_FRAME, "text frames only", CloseCode.UNSUPPORTED_DATA)
            return
        try:
            message = codec.decode_client(
                item.data, max_bytes=self.session_config.limits.max_frame_bytes
            )
        except RemoteProtocolError as exc:
            self._fail(link, exc.error_code, exc.message, CloseCode.PROTOCOL_ERROR)
            return
        if isinstance(message, Hello):
            self._open_session(link, message)
        elif isinstance(message, Resume):
            self._resume_session(link, message)
        else:
            self._fail(
                link,
                ErrorCode.UNEXPECTED_MESSAGE,
                "first frame must be hello or resume",
                CloseCode.PROTOCOL_ERROR,
            )

    def _open_session(self, link: Link, hello: Hello) -> None:
        if negotiate_version(hello.versions) is None:
            refused = rejection("unsupported_version", "no common protocol version")
            self._reject(link, refused.rejected, refused.close_code)
            return
        number = next(self._session_ids)
        session = ServerSession(
            session_id=f"m{number}",
            user_id=link.user,
            epoch=f"e{number}",
            client_ip=link.peer,
            now=self.now,
            config=self.session_config,
            token_factory=self._tokens,
        )
        session.welcome(hello)
        host = _Host(session, agent.new_context(), link=link)
        link.host = host
        self.hosts[session.session_id] = host
        self._commit(host, context=host.context)
        self._count("ws_sessions_opened_total")
        self._flush(host)

    def _resume_session(self, link: Link, resume: Resume) -> None:
        """reference_server.app's ``_resume``: decide, then move the session to this link."""
        now = self.now
        host = self.hosts.get(resume.session_id)
        if host is None:
            refused = self._gone(resume.session_id)
            self._count("ws_resumes_total", refused.rejected.reason)
            self._reject(link, refused.rejected, refused.close_code)
            return
        session = host.session
        fresh = now - link.issued_at <= self.reauth_max_age_s
        result = session.resume(
            resume, now=now, user_id=link.user, client_ip=link.peer, credential_fresh=fresh
        )
        if not isinstance(result, ResumeAccepted):
            reason = result.rejected.reason
            self._count("ws_resumes_total", reason)
            if reason in ("ip_denied", "reauth_required"):
                self._count("ws_ip_changes_total", reason)
            if result.revoked:
                self._count("ws_token_reuse_detections_total")
                current, host.link = host.link, None
                if result.close_current is not None and current is not None:
                    self._close_with(current, result.close_current)
                self._forget(host, "revoked")
            elif session.state in TERMINAL_SESSION_STATES:
                self._forget(host, session.state.value)
            else:
                self._commit(host)
            self._reject(link, result.rejected, result.close_code)
            return
        old, host.link = host.link, link
        link.host = host
        if result.taken_over is not None and old is not None:
            self._count("ws_session_takeovers_total")
            self._close_with(old, result.taken_over)
        if result.ip_changed:
            self._count("ws_ip_changes_total", "allowed")
        self._commit(host)
        self._count("ws_resumes_total", result.outcome)
        self._count("ws_replayed_messages_total", amount=result.replayed)
        self._flush(host)

    def _gone(self, session_id: str) -> ResumeRefused:
        """The answer to a resume of a session the server does not hold (§8.3)."""
        reason = self.store.tombstone(session_id)
        if reason == "revoked":
            return rejection("session_revoked", "session was revoked")
        if reason == "closed":  # §7.4: ended by bye
            return rejection("session_closed", f"session {session_id} was ended by bye")
        return rejection(
            "session_expired" if reason == "expired" else "session_unknown",
            f"no session {session_id}" + (f" ({reason})" if reason else ""),
        )

    def _react(self, host: _Host, events: list[SessionEvent]) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                self._answer(host, event)
            elif isinstance(event, DuplicateRequest):
                self._commit(host)
            elif isinstance(event, ByeReceived):
                link, host.link = host.link, None
                self._forget(host, "closed")
                if link is not None:
                    self._server_closes(link, CloseCode.NORMAL)
        if not events:
            self._commit(host)

    def _answer(self, host: _Host, event: RequestReceived) -> None:
        """Answer a request as reference_server.app does: the agent's reply (tool calls, then
        chunks) and two stored turns, a history page, or the stored context."""
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
            history = (
                HistoryEntry(
                    index=host.history_len, role="user", message_id=request.id, text=request.text
                ),
                HistoryEntry(
                    index=host.history_len + 1, role="agent", message_id=request.id, text=turn.reply
                ),
            )
            host.history_len += 2
            host.context = turn.context
            self._commit(
                host, new_ids=((request.id, request.seq),), history=history, context=turn.context
            )
        elif isinstance(request, GetConversationHistory):
            started = time.perf_counter()
            page = self.store.history(
                session.session_id, before=request.before, limit=max(0, request.limit)
            )
            elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
            session.send(
                lambda seq: ConversationHistory(
                    seq=seq,
                    in_reply_to=request.id,
                    entries=page.entries,
                    total=page.total,
                    next_before=page.next_before,
                    retrieval_ms=elapsed_ms,
                )
            )
            self._commit(host, new_ids=((request.id, request.seq),))
        elif isinstance(request, GetAgentContext):
            context = self.store.context(session.session_id) or agent.new_context()
            session.send(
                lambda seq: AgentContext(
                    seq=seq, in_reply_to=request.id, context=context, retrieval_ms=0.0
                )
            )
            self._commit(host, new_ids=((request.id, request.seq),))

    # --- the server: frames out --------------------------------------------------------------

    def _flush(self, host: _Host) -> None:
        """Send what the session queued, on the connection that carries it."""
        link = host.link
        if link is None or not link.server_open:
            return
        frames = host.session.data_to_send()
        for frame in frames:
            self._enqueue(link, "downstream", frame)
            self._count("ws_messages_sent_total")
        if frames:
            self.kick()

    def _send(self, link: Link, message: ServerMessage) -> None:
        if link.server_open:
            self._enqueue(link, "downstream", codec.encode(message))
            self._count("ws_messages_sent_total")

    def _reject(self, link: Link, rejected: Rejected, close_code: int) -> None:
        self._send(link, rejected)
        self._server_closes(link, close_code)

    def _fail(self, link: Link, code: str, message: str, close_code: int) -> None:
        self._count("ws_protocol_errors_total", code)
        self._send(link, Error(code=code, message=message[:500]))
        self._server_closes(link, close_code)

    def _answer_error(self, link: Link, code: str, message: str, close: int | None) -> None:
        """An error after whatever the session queued before it; a close when it is fatal."""
        if link.host is not None:
            self._flush(link.host)
        if close is None:
            self._send(link, Error(code=code, message=message[:500]))
            self.kick()
        else:
            self._fail(link, code, message, close)

    def _close_with(self, link: Link, closing: Closing) -> None:
        self._send(link, closing)
        self._server_closes(link, closing.code)

    # --- store -----------------------------------------------------------------------------

    def _commit(
        self,
        host: _Host,
        *,
        new_ids: tuple[tuple[str, int], ...] = (),
        history: Sequence[HistoryEntry] = (),
        context: AgentContextData | None = None,
    ) -> None:
        """Store the session's change before anything it produced is sent (as the server)."""
        session = host.session
        if session.state in TERMINAL_SESSION_STATES:
            return
        self.store.commit(
            Change(
                snapshot=session.snapshot(),
                replay=session.replay_buffer,
                new_request_ids=new_ids,
                request_ids_from=session.request_ids_from,
                new_history=history,
                context=context,
            )
        )

    def _forget(self, host: _Host, reason: str) -> None:
        self.hosts.pop(host.session.session_id, None)
        self.store.delete(host.session.session_id, reason, self.now)

    # --- time, restarts --------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward and sweep at the new time (the admin channel's
        ``advance_clock``); frames due now are delivered first, so pongs count."""
        if seconds < 0:
            raise ValueError("seconds < 0")
        self.pump()
        self.now += seconds
        self.sweep()
        self.pump()

    def sweep(self) -> None:
        """Heartbeats and expiry for every session at the clock's current time."""
        now = self.now
        for host in list(self.hosts.values()):
            session = host.session
            for event in session.tick(now):
                if isinstance(event, HeartbeatTimedOut):
                    self._count("ws_heartbeat_timeouts_total")
                    link, host.link = host.link, None
                    session.connection_lost(now)
                    self._commit(host)
                    if link is not None:
                        self._server_closes(link, CloseCode.HEARTBEAT_TIMEOUT)
                elif isinstance(event, SessionExpired):
                    self._count("ws_session_expirations_total")
                    self._forget(host, "expired")
            self._flush(host)
        self.store.sweep_tombstones(now - TOMBSTONE_TTL_S)

    def restart(self) -> None:
        """Kill the server and start it again on its store: every connection is cut without a
        word, metrics start from zero, sessions come back from what the store holds (those
        that were attached are detached as of the restart, ``ServerSession.restore``)."""
        for link in list(self.links):
            link.server_open = False  # killed: nothing is committed on the way down
            self._close_client_side(link, ABNORMAL_CLOSURE)
        self.links = []
        self._counters.clear()
        self.restarts += 1
        self.hosts = {}
        for stored in self.store.load_sessions():
            session = ServerSession.restore(
                stored.snapshot,
                replay=stored.replay,
                processed_ids=stored.request_ids,
                now=self.now,
                config=self.session_config,
                token_factory=self._tokens,
            )
            context = self.store.context(session.session_id) or agent.new_context()
            total = self.store.history(session.session_id, before=None, limit=0).total
            self.hosts[session.session_id] = _Host(session, context, history_len=total)

    def stop(self) -> None:
        """Close every connection and every timer; the world refuses connections after."""
        self.stopped = True
        for link in list(self.links):
            self._cut(link)
        self.links = []
        for handle in [self._kick, self._timer, *self._later]:
            if handle is not None:
                handle.cancel()
        self._kick, self._timer, self._timer_due = None, None, math.inf
        self._later.clear()
        _WORLDS.pop(self.url, None)

    # --- metrics ---------------------------------------------------------------------------

    def _count(self, name: str, label: str = "", *, amount: float = 1.0) -> None:
        key = (name, label)
        self._counters[key] = self._counters.get(key, 0.0) + amount

    def metrics_text(self) -> str:
        """The reference server's metrics, as Prometheus text, under the same names; the
        process's resident memory is this process's (the world lives in it, as an in-process
        reference server does); no latency histograms."""
        lines = [f"ws_connections {self.open_connections}"]
        rss = _resident_bytes()
        if rss is not None:
            lines.append(f"process_resident_memory_bytes {rss:g}")
        states = dict.fromkeys(SessionState, 0)
        for host in self.hosts.values():
            states[host.session.state] += 1
        lines += [f'ws_sessions{{state="{s.value}"}} {n}' for s, n in states.items()]
        for name in _COUNTERS:
            lines.append(f"{name} {self._counters.get((name, ''), 0.0):g}")
        for (name, label), value in sorted(self._counters.items()):
            if label:
                lines.append(f'{name}{{{_LABELLED[name]}="{label}"}} {value:g}')
        return "\n".join(lines) + "\n"


_COUNTERS: Final = (
    "ws_connections_opened_total",
    "ws_sessions_opened_total",
    "ws_replayed_messages_total",
    "ws_session_expirations_total",
    "ws_token_reuse_detections_total",
    "ws_session_takeovers_total",
    "ws_heartbeat_timeouts_total",
    "ws_messages_received_total",
    "ws_messages_sent_total",
)
_LABELLED: Final = {
    "ws_handshake_rejections_total": "reason",
    "ws_resumes_total": "outcome",
    "ws_ip_changes_total": "action",
    "ws_protocol_errors_total": "code",
}


def _resident_bytes() -> float | None:
    """This process's resident memory (Linux), as prometheus_client's process collector reads
    it; None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return float(pages * os.sysconf("SC_PAGE_SIZE"))


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def _close_code(exc: RemoteProtocolError) -> int:
    if exc.error_code in _FATAL_ERRORS:
        return int(exc.close_code)
    return int(CloseCode.POLICY_VIOLATION)


def _chunk(seq: int, *, in_reply_to: str, index: int, text: str, final: bool) -> ReplyChunk:
    return ReplyChunk(seq=seq, in_reply_to=in_reply_to, chunk_index=index, text=text, final=final)


def _tool_call(seq: int, *, in_reply_to: str, call: ToolCallRecord) -> ToolCall:
    return ToolCall(seq=seq, in_reply_to=in_reply_to, call=call)


# --- tampering, for tests that must see a checker catch a broken server ------------------------


def _matcher(kind: type[ServerMessage]) -> Callable[[bytes], bool]:
    def matches(frame: bytes) -> bool:
        try:
            return isinstance(codec.decode_server(frame), kind)
        except RemoteProtocolError:
            return False

    return matches


def losing(kind: type[ServerMessage] = ReplyChunk, *, nth: int = 1) -> Tamper:
    """A tamper that loses the ``nth`` frame of ``kind`` the server sends (once)."""
    matches, seen = _matcher(kind), itertools.count(1)

    def tamper(frame: bytes) -> Sequence[bytes]:
        return [] if matches(frame) and next(seen) == nth else [frame]

    return tamper


def doubling(kind: type[ServerMessage] = ReplyChunk, *, nth: int = 1) -> Tamper:
    """A tamper that delivers the ``nth`` frame of ``kind`` the server sends twice (once)."""
    matches, seen = _matcher(kind), itertools.count(1)

    def tamper(frame: bytes) -> Sequence[bytes]:
        return [frame, frame] if matches(frame) and next(seen) == nth else [frame]

    return tamper


# --- the target --------------------------------------------------------------------------------


class MemoryTarget:
    """A ``Target`` over a ``MemoryWorld``: restart, a virtual clock and metrics, no sockets."""

    capabilities: frozenset[str] = frozenset(
        {"restart", "virtual_clock", "metrics", "inspect_store"}
    )

    def __init__(self, world: MemoryWorld | None = None) -> None:
        self.world = world or MemoryWorld()
        self.url = self.world.url
        self.description = f"in-memory reference server ({self.url})"

    def credential_for(self, user: str) -> str:
        return self.world.credential_for(user)

    async def start(self) -> None:
        return None

    async def advance_clock(self, seconds: float) -> None:
        self.world.advance(seconds)

    async def restart(self) -> None:
        self.world.restart()

    async def metrics(self) -> str | None:
        return self.world.metrics_text()

    async def stored_rows(self, session: str) -> dict[str, int]:
        return self.world.store.rows_of(session)

    async def settle(self, connected: int, timeout: float) -> None:
        """Nothing to wait for: the world notices a drop as it happens."""
        self.world.pump()

    async def stop(self) -> None:
        self.world.stop()
