"""The ``socketio`` driver: Socket.IO connection state recovery, over ``websockets``.

It speaks Engine.IO 4 / Socket.IO 5 (``socketio_wire``) to a server shaped like the Node host
of ``targets/socketio/`` (docs/servers.md): a ``chat`` event answered by ``reply`` events, a
``context`` event answered by an ack, a token in the CONNECT's auth payload. python-socketio
is not used: its client has no connection state recovery.

How the scenario language maps onto Socket.IO, honestly:

- a **session** is Socket.IO's private session id (``pid``), and so is its **stream**; a
  **position** is the offset the server appends to each stored event: an opaque string
  (yeast ids), so only duplicates are judged from positions, and losses from the replies.
- **connect** joins the namespace with ``{token}``: ``new``, or ``rejected`` with the refusal's
  message (``auth_failed``).
- **resume** opens a new connection and joins with ``{token, pid, offset}`` (the last offset
  received; none when no event came, as socket.io-client does). The same pid back is a
  recovery: ``full``, with the missed events (they arrive before the CONNECT answer). Another
  pid means the server started a fresh session instead: Socket.IO says nothing more, so the
  driver reports ``rejected`` with reason ``not_recovered`` and leaves that fresh session
  (a silent fresh session is exactly what a user must see as a failure; docs/drivers.md).
- ``token: previous`` presents the (pid, offset) the client presented at its last resume, from
  a connection of its own; ``session_of`` presents another client's (pid, offset).
- **context** is what recovery restores: ``socket.data`` and the rooms, read with an ack.
  There is no **history**: Socket.IO stores nothing beyond its recovery buffer.
- **close reasons** are what Socket.IO conveys: ``io server disconnect`` (the server ended
  the socket), ``transport close`` (the WebSocket closed), ``ping timeout`` (no ping from the
  server within pingInterval + pingTimeout, as socket.io-client decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from harness.driver import socketio_wire as wire
from harness.driver.base import (
    ClientConfig,
    Driver,
    DriverError,
    DriverFactory,
    DriverInfo,
    EmbeddedTargets,
    Observe,
    PositionModel,
    RawAnswer,
    Route,
)
from harness.history import Closed, Delivered, Outcome, Turn, Violation
from harness.scenario.model import Scenario
from harness.targets.base import Target
from harness.targets.socketio import SocketIOTarget

INFO = DriverInfo(
    name="socketio",
    description="Socket.IO 4 connection state recovery (the Node host of targets/socketio/)",
    positions=PositionModel(order="opaque", continues_across_sessions=True),
    capabilities=frozenset(
        {
            "chat",
            "resume",
            "resume_previous_token",
            "take_over",
            "context",
            "raw_frames",
            "source_ip",
            "forwarded_for",
            "close_reason",
        }
    ),
)

NOT_RECOVERED = "not_recovered"
"""The rejection reason of a resume that got a fresh session instead of the old one."""


def engine_url(url: str) -> str:
    """The WebSocket URL of Engine.IO 4 at ``url`` (a Socket.IO path such as /socket.io/)."""
    parts = urlsplit(url)
    path = parts.path if parts.path not in ("", "/") else "/socket.io/"
    query = "&".join(q for q in (parts.query, "EIO=4&transport=websocket") if q)
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


class _Link:
    """One WebSocket connection: reads packets, answers pings, notices a silent server."""

    def __init__(
        self,
        on_packet: Callable[[wire.Packet], None],
        on_close: Callable[[int | None, str], None],
        on_violation: Callable[[str], None],
    ) -> None:
        self._on_packet = on_packet
        self._on_close = on_close
        self._on_violation = on_violation
        self.ws: ClientConnection | None = None
        self.open: wire.Open | None = None
        self.closed = False
        self.close_code: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self.offsets = True

    async def start(self, url: str, route: Route, timeout: float) -> wire.Open:
        headers = {"X-Forwarded-For": route.forwarded_for} if route.forwarded_for else {}
        extra: dict[str, Any] = {"local_addr": (route.source_ip, 0)} if route.source_ip else {}
        if route.connect_to is not None:
            # TCP goes to the proxy; the URL still names the server (Host header, TLS name).
            extra["host"], extra["port"] = route.connect_to
        try:
            async with asyncio.timeout(timeout):
                self.ws = await connect(
                    url,
                    additional_headers=headers,
                    ping_interval=None,  # Engine.IO has its own heartbeat
                    close_timeout=1,
                    compression=None,
                    proxy=None,
                    max_size=None,
                    **extra,
                )
                first = wire.decode(await self.ws.recv())
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            await self.abort()
            raise DriverError(f"connection: {type(exc).__name__}: {exc}") from None
        except wire.PeerProtocolError as exc:
            await self.abort()
            raise DriverError(f"connection: {exc}") from None
        if not isinstance(first, wire.Open):
            await self.abort()
            raise DriverError(f"connection: the server's first packet was {first!r}, not open")
        self.open = first
        self._reader = asyncio.create_task(self._read(self.ws, first))
        return first

    async def _read(self, ws: ClientConnection, opened: wire.Open) -> None:
        # socket.io-client's rule: no ping within pingInterval + pingTimeout, the link is dead.
        silence = opened.ping_interval_s + opened.ping_timeout_s
        reason = "transport close"
        try:
            while True:
                try:
                    async with asyncio.timeout(silence):
                        frame = await ws.recv()
                except TimeoutError:
                    reason = "ping timeout"
                    ws.transport.abort()
                    return
                try:
                    packet = wire.decode(frame, offsets=self.offsets)
                except wire.PeerProtocolError as exc:
                    self._on_violation(str(exc))
                    continue
                if isinstance(packet, wire.Ping):
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(wire.encode_pong())
                    continue
                if isinstance(packet, wire.EngineClose):
                    ws.transport.abort()
                    return
                self._on_packet(packet)
        except ConnectionClosed as exc:
            received = exc.rcvd
            self.close_code = int(received.code) if received else None
            if received and received.reason:
                reason = received.reason
        finally:
            self.closed = True
            self._on_close(self.close_code, reason)

    async def send(self, frame: str | bytes) -> None:
        if self.ws is None or self.closed:
            raise DriverError("not connected")
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            raise DriverError("the connection is closed") from None

    async def close(self) -> None:
        """A clean WebSocket close (the transport closes; the session stays recoverable)."""
        if self.ws is not None:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                await asyncio.wait_for(self.ws.close(), 2)
        await self._stop()

    async def abort(self, *, reset: bool = False) -> None:
        """Drop the connection at once; with ``reset``, with a TCP RST (SO_LINGER 0)."""
        ws = self.ws
        if ws is not None:
            if reset:
                sock = ws.transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
            ws.transport.abort()
        await self._stop()

    async def _stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(reader, 2)
            if not reader.done():
                reader.cancel()
        self.closed = True


class SocketIODriver:
    """One Socket.IO client of the host."""

    info = INFO

    def __init__(self, config: ClientConfig, observe: Observe) -> None:
        self.name = config.name
        self._observe = observe
        self._url = engine_url(config.url)
        self._token = config.credential
        self._route = config.route
        self._link: _Link | None = None
        self.pid: str | None = None
        self.offset: str | None = None
        self._presented: list[tuple[str, str | None]] = []
        """The (pid, offset) presented at each resume that recovered, oldest first."""
        self._parts: dict[str, list[bool]] = {}
        self._acks: dict[int, asyncio.Future[tuple[Any, ...]]] = {}
        self._ack_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._queued: list[str] = []
        self._answer: asyncio.Future[wire.Connected | wire.ConnectError] | None = None
        self._expecting: str | None = None
        """The pid a resume asked for: events before the CONNECT answer belong to it."""
        self._changed = asyncio.Event()
        self._quiet = False

    # --- observations --------------------------------------------------------------------

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_packet(self, packet: wire.Packet) -> None:
        if isinstance(packet, wire.Event):
            self._on_event(packet)
        elif isinstance(packet, wire.Connected | wire.ConnectError):
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(packet)
        elif isinstance(packet, wire.Ack):
            future = self._acks.pop(packet.ack_id, None)
            if future is not None and not future.done():
                future.set_result(packet.args)
        elif isinstance(packet, wire.Disconnected):
            self._observe(Closed(code=None, reason="io server disconnect"))
        self._wake()

    def _on_event(self, event: wire.Event) -> None:
        stream = self._expecting or self.pid or "-"
        if event.offset is None:
            self._observe(Violation(message=f"event {event.name!r} came without an offset"))
            return
        self.offset = event.offset
        payload = event.args[0] if event.args and isinstance(event.args[0], dict) else {}
        if event.name == "reply":
            reply_to = str(payload.get("in_reply_to", ""))
            final = bool(payload.get("final"))
            self._parts.setdefault(reply_to, []).append(final)
            self._observe(
                Delivered(
                    stream=stream,
                    position=event.offset,
                    kind="reply",
                    reply_to=reply_to,
                    text=str(payload.get("text", "")),
                    final=final,
                )
            )
        else:
            self._observe(Delivered(stream=stream, position=event.offset, kind=event.name))

    def _on_close(self, code: int | None, reason: str) -> None:
        if not self._quiet:
            self._observe(Closed(code=code, reason=reason))
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(DriverError(f"closed before the answer ({reason})"))
        for future in self._acks.values():
            if not future.done():
                future.set_exception(DriverError(f"closed before the ack ({reason})"))
        self._acks.clear()
        self._wake()

    def _on_violation(self, message: str) -> None:
        self._observe(Violation(message=message))

    # --- sessions ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.closed

    def set_route(self, route: Route) -> None:
        self._route = route

    async def _drop(self, *, reset: bool = False) -> None:
        link, self._link = self._link, None
        if link is not None:
            self._quiet = True
            try:
                await link.abort(reset=reset)
            finally:
                self._quiet = False

    async def _join(
        self, auth: dict[str, Any], timeout: float, expecting: str | None
    ) -> tuple[_Link, wire.Connected | wire.ConnectError]:
        """Open a connection and join the namespace; the answer, or ``DriverError``."""
        deadline = asyncio.get_running_loop().time() + max(0.05, timeout)
        link = _Link(self._on_packet, self._on_close, self._on_violation)
        self._link = link
        self._answer = asyncio.get_running_loop().create_future()
        self._expecting = expecting
        try:
            await link.start(self._url, self._route, max(0.05, timeout))
            await link.send(wire.encode_connect(auth))
            left = max(0.05, deadline - asyncio.get_running_loop().time())
            try:
                answer = await asyncio.wait_for(self._answer, left)
            except TimeoutError:
                raise DriverError(f"no answer to the namespace connect in {timeout:g} s") from None
        except DriverError:
            await self._drop()
            raise
        finally:
            self._expecting = None
            self._answer = None
        link.offsets = isinstance(answer, wire.Connected) and answer.pid is not None
        return link, answer

    async def connect(self, timeout: float) -> Outcome:
        await self._drop()
        self.pid = self.offset = None
        self._presented.clear()
        _, answer = await self._join({"token": self._token}, timeout, None)
        if isinstance(answer, wire.ConnectError):
            await self._drop()
            return Outcome(kind="rejected", reason=answer.message or "connect_error")
        self.pid = answer.pid
        await self._flush()
        return Outcome(kind="new", session=answer.pid, stream=answer.pid)

    async def resume(
        self,
        timeout: float,
        *,
        token: Literal["current", "previous"] = "current",
        session_of: Driver | None = None,
    ) -> Outcome:
        if session_of is not None:
            if not isinstance(session_of, SocketIODriver):
                raise DriverError("take over: the other client is not a Socket.IO client")
            if session_of.pid is None:
                raise DriverError(f"{session_of.name} has no session to take over")
            pid, offset = session_of.pid, session_of.offset
        elif token == "previous":
            if not self._presented:
                raise DriverError("no previous credential: the client has recovered no session")
            return await self._replay(*self._presented[-1], timeout)
        else:
            if self.pid is None:
                raise DriverError("no session to resume: the client never connected")
            pid, offset = self.pid, self.offset
        await self._drop()  # a half-open connection the client gives up on
        auth: dict[str, Any] = {"token": self._token, "pid": pid}
        if offset is not None:
            auth["offset"] = offset
        seen = sum(len(p) for p in self._parts.values())
        held = self.offset
        self.offset = offset  # the replayed events continue from it
        try:
            _, answer = await self._join(auth, timeout, pid)
        except DriverError:
            self.offset = held
            raise
        replayed = sum(len(p) for p in self._parts.values()) - seen
        if isinstance(answer, wire.ConnectError) or answer.pid != pid:
            self.offset = held
            if isinstance(answer, wire.ConnectError):
                await self._drop()
                reason = answer.message or "connect_error"
                return Outcome(kind="rejected", reason=reason, replayed=replayed)
            await self._leave()
            return Outcome(kind="rejected", reason=NOT_RECOVERED, replayed=replayed)
        self.pid = pid
        self._presented.append((pid, offset))
        await self._flush()
        return Outcome(kind="full", session=pid, stream=pid, after=offset, replayed=replayed)

    async def _leave(self) -> None:
        """Leave a fresh session the resume did not ask for, and close its connection."""
        if self._link is not None:
            with contextlib.suppress(DriverError):
                await self._link.send(wire.encode_leave())
        self._quiet = True
        try:
            if self._link is not None:
                await self._link.close()
        finally:
            self._quiet = False
            self._link = None

    async def _replay(self, pid: str, offset: str | None, timeout: float) -> Outcome:
        """Present an old (pid, offset) from a connection of its own, as a thief would; the
        client's own connection and state are left as they are."""
        events = 0
        answer: asyncio.Future[wire.Connected | wire.ConnectError] = (
            asyncio.get_running_loop().create_future()
        )

        def on_packet(packet: wire.Packet) -> None:
            nonlocal events
            if isinstance(packet, wire.Event):
                events += 1
            elif isinstance(packet, wire.Connected | wire.ConnectError) and not answer.done():
                answer.set_result(packet)

        def on_close(code: int | None, reason: str) -> None:
            if not answer.done():
                answer.set_exception(DriverError(f"closed before the answer ({reason})"))

        thief = _Link(on_packet, on_close, self._on_violation)
        try:
            await thief.start(self._url, self._route, max(0.05, timeout))
            auth: dict[str, Any] = {"token": self._token, "pid": pid}
            if offset is not None:
                auth["offset"] = offset
            await thief.send(wire.encode_connect(auth))
            try:
                got = await asyncio.wait_for(answer, max(0.05, timeout))
            except TimeoutError:
                raise DriverError(f"no answer to the namespace connect in {timeout:g} s") from None
        finally:
            await thief.abort()
        if isinstance(got, wire.ConnectError):
            return Outcome(kind="rejected", reason=got.message or "connect_error", replayed=events)
        if got.pid != pid:
            return Outcome(kind="rejected", reason=NOT_RECOVERED, replayed=events)
        return Outcome(kind="full", session=pid, stream=f"{pid} (replayed)", replayed=events)

    async def _flush(self) -> None:
        """Send what was queued while disconnected, as socket.io-client sends its buffer."""
        queued, self._queued = self._queued, []
        for frame in queued:
            await self._send_or_queue(frame)

    async def _send_or_queue(self, frame: str) -> None:
        if self.connected:
            assert self._link is not None
            try:
                await self._link.send(frame)
                return
            except DriverError:
                pass
        self._queued.append(frame)

    async def disconnect(self, how: Literal["close", "reset"]) -> None:
        if how == "reset":
            await self._drop(reset=True)
            return
        link, self._link = self._link, None
        if link is not None:
            self._quiet = True
            try:
                await link.close()
            finally:
                self._quiet = False

    async def aclose(self) -> None:
        await self._drop()

    # --- requests ------------------------------------------------------------------------

    async def send_message(self, text: str) -> str:
        message_id = f"{self.name}:{next(self._message_ids)}"
        await self._send_or_queue(wire.encode_event("chat", {"id": message_id, "text": text}))
        return message_id

    async def _wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    async def await_reply(self, message_id: str, timeout: float) -> int:
        if not await self._wait_for(lambda: any(self._parts.get(message_id, ())), timeout):
            parts = len(self._parts.get(message_id, ()))
            raise DriverError(f"no complete reply to {message_id} ({parts} parts) in {timeout:g} s")
        return len(self._parts[message_id])

    async def resend(self, message_id: str, *, renumber: bool, timeout: float) -> None:
        raise DriverError("not offered: Socket.IO events carry no number of the client's")

    async def fetch_history(self, timeout: float, *, page_size: int | None = None) -> list[Turn]:
        raise DriverError("not offered: Socket.IO stores no conversation history")

    async def fetch_context(self, timeout: float) -> Mapping[str, Any]:
        if not self.connected:
            raise DriverError("context: not connected")
        assert self._link is not None
        ack_id = next(self._ack_ids)
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        await self._link.send(wire.encode_ack_request(ack_id, "context"))
        try:
            args = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._acks.pop(ack_id, None)
            raise DriverError(f"context: no ack in {timeout:g} s") from None
        if not args or not isinstance(args[0], dict):
            raise DriverError(f"context: the ack held {args!r}, not an object")
        context: dict[str, Any] = args[0]
        return context

    async def send_raw(
        self, frame: str | bytes, timeout: float, *, until_close: bool = False
    ) -> RawAnswer:
        """Send a frame as is; wait for a CONNECT_ERROR or a DISCONNECT (or, with
        ``until_close``, the close), at most ``timeout``."""
        link = self._link
        if link is None or link.closed:
            raise DriverError("send: not connected")
        errors: list[str] = []
        previous = self._on_packet

        answered = asyncio.Event()

        def watch(packet: wire.Packet) -> None:
            if isinstance(packet, wire.ConnectError):
                errors.append(packet.message)
            elif isinstance(packet, wire.Disconnected):
                errors.append("io server disconnect")
            if errors and not until_close:
                answered.set()
            previous(packet)

        link._on_packet = watch
        try:
            with contextlib.suppress(DriverError):
                await link.send(frame)
            await self._wait_for(lambda: link.closed or answered.is_set(), timeout)
        finally:
            link._on_packet = previous
        return RawAnswer(error=errors[0] if errors else None, close=link.close_code)


class EmbeddedSocketIO:
    """The Node host of Socket.IO, one child process per scenario."""

    def capabilities(self, *, virtual_clock: bool) -> frozenset[str]:
        return SocketIOTarget.capabilities

    def target(self, scenario: Scenario, *, virtual_clock: bool) -> Target:
        return SocketIOTarget()


class SocketIOFactory:
    """The entry point of the ``socketio`` driver (``ws_continuity.drivers``)."""

    info = INFO
    embedded: EmbeddedTargets = EmbeddedSocketIO()

    def __call__(self, config: ClientConfig, observe: Observe) -> Driver:
        # Returned as a `Driver`: mypy checks here that SocketIODriver meets the contract.
        return SocketIODriver(config, observe)


factory: DriverFactory = SocketIOFactory()
