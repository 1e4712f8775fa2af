"""A thin asyncio client for the reconnection protocol, over a real WebSocket.

It only moves frames: ``ClientProtocol`` decides everything. One reader task feeds incoming
frames to the protocol and sends what it answers (acks, pongs); callers wait on conditions
over the events seen so far, always with a timeout. The harness's reference driver and the
tests build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Literal, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from reference_server.batched_send import send_texts
from reference_server.protocol import (
    SUPPORTED_VERSIONS,
    Attached,
    ClientEvent,
    ClientProtocol,
    ClientState,
    Delivered,
    RejectedByServer,
    RemoteProtocolError,
)
from reference_server.protocol.messages import (
    AgentContext,
    ConversationHistory,
    ReplyChunk,
    ServerSequenced,
)

T = TypeVar("T")
_LIVE = frozenset({ClientState.CONNECTING, ClientState.RESUMING, ClientState.ATTACHED})


class HandshakeRefusedError(Exception):
    """The server answered the WebSocket handshake with an HTTP error (401, 503, ...)."""

    def __init__(self, status: int, body: str, retry_after: str | None) -> None:
        super().__init__(f"HTTP {status}: {body.strip()}")
        self.status, self.body, self.retry_after = status, body, retry_after


class ConnectionLostError(Exception):
    """The connection went away while a request waited for its answer."""


class AsyncClient:
    """One protocol client; connect, resume and drop it as often as a test needs."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        headers: Mapping[str, str] | None = None,
        source_ip: str | None = None,
        token_in_query: bool = False,
        open_timeout: float = 5.0,
        on_gap: Literal["raise", "report"] = "raise",
        ack_delay: float = 0.005,
        ack_every: int = 32,
        versions: tuple[int, ...] = SUPPORTED_VERSIONS,
    ) -> None:
        """Acks are cumulative (§5): one goes out ``ack_delay`` seconds after a delivery, or at
        once after ``ack_every`` deliveries, or with the next request, whichever is first.
        ``versions`` are the protocol versions offered in hello and resume (§4.1)."""
        self.url = url
        self.token = token
        self.headers = dict(headers or {})
        self.source_ip = source_ip
        self.connect_to: tuple[str, int] | None = None
        self.token_in_query = token_in_query
        self.open_timeout = open_timeout
        self.protocol = ClientProtocol(versions=versions, on_gap=on_gap)
        self.events: list[ClientEvent] = []
        self.errors: list[RemoteProtocolError] = []
        """Protocol violations the server committed, as this client saw them."""
        self.close_codes: list[int | None] = []
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._acker: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._delivered: list[ServerSequenced] = []
        self._by_request: dict[str, list[ServerSequenced]] = {}
        self._ack_wanted = asyncio.Event()
        self.ack_delay = ack_delay
        self.ack_every = ack_every
        self._since_ack = 0
        self.on_events: Callable[[list[ClientEvent]], None] | None = None
        """Called with the events of each frame as it is received (a harness records them)."""
        self.on_close: Callable[[int | None], None] | None = None
        """Called with the close code when a connection this client opened has closed."""
        self.on_error: Callable[[RemoteProtocolError], None] | None = None
        """Called with each protocol violation of the server, as it is detected."""
        # One sender at a time, each batch whole and in order: a batch that waits for the
        # rate limit must not let a later one overtake it (the server would see a seq gap).
        self._sending = asyncio.Lock()
        self._pacer: _Pacer | None = None

    # --- what was seen -------------------------------------------------------------------

    @property
    def delivered(self) -> list[ServerSequenced]:
        """Numbered server messages delivered, in order, each once."""
        return self._delivered

    @property
    def connected(self) -> bool:
        return self.ws is not None and self.protocol.state in _LIVE

    # --- connections ---------------------------------------------------------------------

    async def connect(self, timeout: float = 5.0) -> Attached | RejectedByServer:
        """Open a connection and a new session."""
        await self._open()
        self.protocol.hello()
        return await self._handshake(timeout)

    async def resume(self, timeout: float = 5.0) -> Attached | RejectedByServer:
        """Open a connection and resume the current session."""
        await self._open()
        self.protocol.resume()
        return await self._handshake(timeout)

    async def _handshake(self, timeout: float) -> Attached | RejectedByServer:
        seen = len(self.events)
        await self._flush()

        def answered() -> Attached | RejectedByServer | None:
            for event in self.events[seen:]:
                if isinstance(event, Attached | RejectedByServer):
                    return event
            return None

        return await self.wait_for(
            answered, timeout, "welcome, resumed or rejected", while_connected=True
        )

    async def _open(self) -> None:
        await self.drop()
        self._pacer = None  # until welcome or resumed says what the limit is
        headers = dict(self.headers)
        url = self.url
        if self.token and self.token_in_query:
            url += ("&" if "?" in url else "?") + f"access_token={self.token}"
        elif self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        extra: dict[str, object] = {"local_addr": (self.source_ip, 0)} if self.source_ip else {}
        if self.connect_to is not None:
            # TCP goes here (e.g. a fault-injecting proxy); the URL still names the server, so
            # the Host header and the TLS server name stay the server's.
            extra["host"], extra["port"] = self.connect_to
        try:
            self.ws = await connect(
                url,
                additional_headers=headers,
                open_timeout=self.open_timeout,
                ping_interval=None,  # heartbeats are the protocol's (§9)
                close_timeout=1,
                compression=None,
                proxy=None,  # never route loopback tests through a system proxy
                max_size=None,  # the protocol enforces its own limit (§12)
                **extra,  # type: ignore[arg-type]
            )
        except InvalidStatus as exc:
            response = exc.response
            raise HandshakeRefusedError(
                response.status_code,
                response.body.decode(errors="replace"),
                response.headers.get("Retry-After"),
            ) from None
        self._reader = asyncio.create_task(self._read(self.ws))
        self._acker = asyncio.create_task(self._ack_later(self.ws))

    async def drop(self) -> None:
        """Cut the connection abruptly (no close handshake), as a network drop would."""
        ws, self.ws = self.ws, None
        if ws is not None:
            ws.transport.abort()
        await self._stop_reader()
        self._lost()

    async def close(self, code: int = 1000) -> None:
        """Close the connection cleanly; the session stays resumable."""
        ws, self.ws = self.ws, None
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.close(code)
        await self._stop_reader()
        self._lost()

    async def bye(self) -> None:
        """End the session for good."""
        self.protocol.bye()
        await self._flush()
        await self.close()

    async def _stop_reader(self) -> None:
        acker, self._acker = self._acker, None
        if acker is not None:
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acker
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    def _lost(self) -> None:
        if self.protocol.state in _LIVE:
            self.protocol.connection_lost()
        self._changed.set()

    @property
    def effective_ack_every(self) -> int:
        """``ack_every``, capped so that at most half the server's replay buffer is ever
        unacknowledged (§5.1): a small buffer cannot overflow while this client is attached."""
        session = self.protocol.session
        if session is None:
            return self.ack_every
        return max(1, min(self.ack_every, session.limits.replay_buffer_max // 2))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                if self.protocol.state not in _LIVE:
                    continue  # told to go (rejected, closing): wait for the close code
                try:
                    events = self.protocol.receive(frame)
                    self.events.extend(events)
                    if self.on_events is not None:
                        self.on_events(events)
                    for event in events:
                        # Exact types, the common one first: an isinstance() against a Struct
                        # class that does not match costs ~1,400 instructions (valgrind).
                        if type(event) is Delivered:
                            self._delivered.append(event.message)
                            reply_to = getattr(event.message, "in_reply_to", None)
                            if reply_to is not None:
                                self._by_request.setdefault(reply_to, []).append(event.message)
                        elif type(event) is Attached:
                            self._pacer = _Pacer.for_session(self.protocol)
                except RemoteProtocolError as exc:
                    self.errors.append(exc)
                    if self.on_error is not None:
                        self.on_error(exc)
                self._changed.set()
                self._since_ack += 1
                batch = self._since_ack < self.effective_ack_every
                # Most frames (reply chunks) call for nothing to send: no lock, no call.
                if self.protocol.has_data_to_send(include_ack=not batch):
                    # The server may have closed after more frames (a closing after a
                    # resumed): a send that finds the connection gone does not stop them
                    # being read.
                    with contextlib.suppress(ConnectionClosed):
                        await self._send(ws, include_ack=not batch)
                if not batch:
                    self._since_ack = 0
                elif self.protocol.ack_due:
                    self._ack_wanted.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_codes.append(ws.close_code)
            if self.on_close is not None:
                self.on_close(ws.close_code)
            if self.ws is ws:
                self.ws = None
                self._lost()

    async def _ack_later(self, ws: ClientConnection) -> None:
        while True:
            await self._ack_wanted.wait()
            await asyncio.sleep(self.ack_delay)
            self._ack_wanted.clear()
            if self.ws is not ws:
                return
            if self.protocol.ack_due and self.protocol.state is ClientState.ATTACHED:
                self._since_ack = 0
                with contextlib.suppress(ConnectionClosed):
                    await self._send(ws)

    async def _flush(self) -> None:
        ws = self.ws
        if ws is None:
            self.protocol.data_to_send()  # nowhere to send: requests wait in unacked
            return
        with contextlib.suppress(ConnectionClosed):
            await self._send(ws)

    async def _send(self, ws: ClientConnection, *, include_ack: bool = True) -> None:
        """Send what the protocol queued, whole and in order, within the server's advertised
        rate limit (§12.1): acks and pongs go at once, other frames wait for the pacer."""
        async with self._sending:
            pacer = self._pacer
            frames = self.protocol.data_to_send(include_ack=include_ack)
            if pacer is None:
                await send_texts(ws, frames)  # one write for them all
                return
            ready: list[bytes] = []
            for frame in frames:
                if not frame.startswith(_FREE_FRAMES) and not pacer.take():
                    # Out of tokens: what is ready goes now, the rest waits its turn.
                    await send_texts(ws, ready)
                    ready = []
                    await pacer.wait()
                ready.append(frame)
            await send_texts(ws, ready)

    # --- requests ------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float,
        what: str,
        *,
        while_connected: bool = False,
    ) -> T:
        """Wait until ``predicate`` returns something other than None; TimeoutError after.

        With ``while_connected``, a lost connection ends the wait at once with
        ``ConnectionLostError`` instead of waiting out the timeout.
        """
        async with asyncio.timeout(timeout):
            while True:
                found = predicate()
                if found is not None:
                    return found
                if while_connected and not self.connected:
                    raise ConnectionLostError(f"connection lost while waiting for {what}")
                self._changed.clear()
                await self._changed.wait()
        raise AssertionError("unreachable")  # pragma: no cover - for type checkers

    async def send_user_message(self, text: str, message_id: str | None = None) -> str:
        """Send (or, while disconnected, queue) a chat turn; return its id."""
        request = self.protocol.send_user_message(text, message_id)
        await self._flush()
        return request.id

    async def reply_to(self, message_id: str, timeout: float = 5.0) -> list[ServerSequenced]:
        """Wait for the complete reply (up to its final chunk) to one user message."""

        def complete() -> list[ServerSequenced] | None:
            reply = self._by_request.get(message_id, [])
            done = any(isinstance(m, ReplyChunk) and m.final for m in reply)
            return list(reply) if done else None

        return await self.wait_for(
            complete, timeout, f"reply to {message_id}", while_connected=True
        )

    async def chat(self, text: str, timeout: float = 5.0) -> list[ServerSequenced]:
        """Send a chat turn and wait for its complete reply."""
        return await self.reply_to(await self.send_user_message(text), timeout)

    async def history(
        self, before: int | None = None, limit: int = 50, timeout: float = 5.0
    ) -> ConversationHistory:
        """Fetch one page of conversation history from the server."""
        request = self.protocol.request_history(before=before, limit=limit)
        await self._flush()
        return await self._answer(request.id, ConversationHistory, timeout)

    async def agent_context(self, timeout: float = 5.0) -> AgentContext:
        """Fetch the agent's stored context from the server."""
        request = self.protocol.request_agent_context()
        await self._flush()
        return await self._answer(request.id, AgentContext, timeout)

    async def _answer(self, request_id: str, kind: type[T], timeout: float) -> T:
        def found() -> T | None:
            for message in self._by_request.get(request_id, ()):
                if isinstance(message, kind):
                    return message
            return None

        return await self.wait_for(
            found, timeout, f"{kind.__name__} for {request_id}", while_connected=True
        )


# Frames the server does not count against its rate limit (§12.1), as the codec writes them.
_FREE_FRAMES = (b'{"type":"ack"', b'{"type":"pong"')
# Stay this far inside the advertised limit: frames sent apart may arrive together.
_PACING_MARGIN = 0.9


class _Pacer:
    """A token bucket mirroring the server's (§12.1), full at every new connection."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate * _PACING_MARGIN, max(1.0, burst * _PACING_MARGIN)
        self.tokens, self.last = self.burst, time.monotonic()

    @classmethod
    def for_session(cls, protocol: ClientProtocol) -> _Pacer | None:
        """The pacer the server's advertisement asks for; None if it advertised none (v1)."""
        limits = protocol.session.limits if protocol.session else None
        if limits is None or limits.frames_per_s is None or limits.frame_burst is None:
            return None
        return cls(limits.frames_per_s, limits.frame_burst)

    def take(self) -> bool:
        """Take one token if there is one now."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def wait(self) -> None:
        """Take one token, sleeping until there is one."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / self.rate)
            self.tokens, self.last = 1.0, time.monotonic()
        self.tokens -= 1
