"""The ``legacy_chat`` driver: a client of examples/legacy_chat/server.py, over ``websockets``.

How the scenario language maps onto a protocol that has no sequence numbers, no replay and no
resume token, honestly (docs/drivers.md, "Writing your own driver"):

- the **session** is the token's user: the server keys history and context by it and names it
  in ``connection_established``. So is the **stream**. A second ``connect`` of the same user
  continues the same conversation: the protocol has no way to start a new one.
- a **position** is the client's own count of what arrived on a connection, in arrival order
  (``"002-00017"``: the 17th message on the client's second connection, zero-padded so that
  text order is arrival order). The server numbers nothing, so positions are declared
  ``opaque``: they identify a delivery, nothing more. A hole, a duplicate or a reordering on
  the server's side cannot show in them; a loss shows in ``delivery: {replies: true}`` (every
  message sent has its complete reply at the client) and in the stored history.
- **connect** opens ``?token=...`` and waits for ``connection_established``: ``new``; a token
  the server refuses (HTTP 401/403) is ``rejected``, ``auth_failed``.
- **resume** is what a client of this protocol can do: reconnect with the same token, then ask
  for the conversation history. If every message this client saw answered is still stored, the
  conversation was kept: ``degraded`` with the warning ``no_replay`` (nothing the server sent
  while the client was away is replayed, and no one can say how much that was). If one is
  missing, the server started over (a restart): ``rejected``, ``not_recovered``, and the
  driver closes that connection. Never ``full``: nothing in the protocol can show that nothing
  was missed.
- **chat** sends ``user_message`` with an id of the client's; the reply is the
  ``agent_chunk`` parts and the ``agent_response`` that ends it, on the same connection. Once
  that connection is gone, its reply can never come (the server sends it nowhere else).
- **history** is ``get_conversation_history``, **context** ``get_agent_context``.
- messages sent while disconnected are queued and sent right after the next connect or resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from harness.driver import connect_errors
from harness.driver.base import (
    ClientConfig,
    Driver,
    DriverError,
    DriverInfo,
    Observe,
    PositionModel,
    RawAnswer,
    Route,
)
from harness.history import Closed, Delivered, Outcome, Turn, Violation

from . import wire

INFO: Final = DriverInfo(
    name="legacy_chat",
    description="the legacy chat protocol of examples/legacy_chat (JSON messages with a type, "
    "token in the query string; no sequence numbers, no replay, no resume)",
    positions=PositionModel(order="opaque", continues_across_sessions=True),
    capabilities=frozenset(
        {"chat", "resume", "history", "context", "raw_frames", "source_ip", "forwarded_for"}
    ),
)

NO_REPLAY: Final = "no_replay"
"""The warning of every accepted resume: the protocol replays nothing."""
NOT_RECOVERED: Final = "not_recovered"
"""The rejection reason of a resume that found the conversation gone."""
AUTH_FAILED: Final = "auth_failed"

M = TypeVar("M", bound=wire.ServerMessage)


def with_token(url: str, token: str) -> str:
    """``url`` with ``token=`` added to its query string (the protocol's only credential)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"token={quote(token, safe='')}") if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


@dataclass(eq=False)
class _Link:
    """One WebSocket connection of the client, and what arrived on it."""

    number: int
    ws: ClientConnection
    received: list[wire.ServerMessage | wire.Unknown] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    closed: bool = False
    mine: bool = False
    """The client closed it itself: not the target's close, so not observed as one."""
    close_code: int | None = None

    def position(self) -> str:
        return f"{self.number:03d}-{len(self.received):05d}"

    def answers(self, kind: type[M], since: int) -> list[M]:
        return [m for m in self.received[since:] if isinstance(m, kind)]


class LegacyChatDriver:
    """One client of the legacy chat server."""

    info = INFO

    def __init__(self, config: ClientConfig, observe: Observe) -> None:
        self.name = config.name
        self._observe = observe
        self._url = config.url
        self._token = config.credential
        self._route = config.route
        self._link: _Link | None = None
        self._connections = itertools.count(1)
        self._ids = itertools.count(1)
        self.session: str | None = None
        self._last: str | None = None
        """The position of the last message received, on any connection."""
        self._parts: dict[str, list[bool]] = {}
        """Per message id, the ``final`` flag of each part of its reply received."""
        self._carrier: dict[str, int] = {}
        """Per message id, the connection it was sent on."""
        self._queued: list[tuple[str, str]] = []
        self._changed = asyncio.Event()
        self._requests = asyncio.Lock()
        """One request and its answer at a time: answers name no request."""

    # --- observations --------------------------------------------------------------------

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

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

    async def _read(self, link: _Link) -> None:
        try:
            async for frame in link.ws:
                self._on_frame(link, frame)
        except ConnectionClosed:
            pass
        finally:
            link.closed = True
            received = link.ws.protocol.close_rcvd
            link.close_code = int(received.code) if received else None
            if not link.mine:
                reason = received.reason if received and received.reason else None
                self._observe(Closed(code=link.close_code, reason=reason))
            self._wake()

    def _on_frame(self, link: _Link, frame: str | bytes) -> None:
        try:
            message = wire.decode(frame)
        except wire.PeerProtocolError as exc:
            self._observe(Violation(message=str(exc)))
            return
        link.received.append(message)
        position = self._last = link.position()
        if isinstance(message, wire.ConnectionEstablished):
            stream = message.user_id
        else:
            stream = self.session or "-"
        kind = wire.type_of(message)
        if isinstance(message, wire.AgentChunk | wire.AgentResponse):
            final = isinstance(message, wire.AgentResponse)
            parts = self._parts.setdefault(message.message_id, [])
            if any(parts):
                self._observe(
                    Violation(message=f"a reply part to {message.message_id} after its last one")
                )
            parts.append(final)
            self._observe(
                Delivered(
                    stream=stream,
                    position=position,
                    kind=kind,
                    reply_to=message.message_id,
                    text=message.content,
                    final=final,
                )
            )
        else:
            self._observe(Delivered(stream=stream, position=position, kind=kind))
        self._wake()

    # --- connections ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.closed

    def set_route(self, route: Route) -> None:
        self._route = route

    def _live(self, what: str) -> _Link:
        link = self._link
        if link is None or link.closed:
            raise DriverError(f"{what}: not connected")
        return link

    async def _open(self, timeout: float) -> tuple[_Link, wire.ConnectionEstablished] | Outcome:
        """A new connection and its ``connection_established``; a refused token's Outcome."""
        deadline = asyncio.get_running_loop().time() + timeout
        headers = (
            {"X-Forwarded-For": self._route.forwarded_for} if self._route.forwarded_for else {}
        )
        extra: dict[str, Any] = {}
        if self._route.source_ip:
            extra["local_addr"] = (self._route.source_ip, 0)
        if self._route.connect_to is not None:
            # TCP goes to the proxy; the URL still names the server (its Host header).
            extra["host"], extra["port"] = self._route.connect_to
        try:
            async with asyncio.timeout(timeout):
                ws = await connect(
                    with_token(self._url, self._token),
                    additional_headers=headers,
                    open_timeout=None,  # bounded above
                    close_timeout=1,
                    proxy=None,
                    **extra,
                )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                return Outcome(kind="rejected", reason=AUTH_FAILED)
            raise DriverError(connect_errors.describe(exc, self._url)) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise DriverError(connect_errors.describe(exc, self._url)) from None
        link = _Link(number=next(self._connections), ws=ws)
        self._link = link
        link.reader = asyncio.create_task(self._read(link))
        left = deadline - asyncio.get_running_loop().time()
        if not await self._wait_for(
            lambda: link.closed or bool(link.answers(wire.ConnectionEstablished, 0)), left
        ):
            await self._drop()
            raise DriverError(f"no connection_established within {timeout:g} s")
        hello = link.answers(wire.ConnectionEstablished, 0)
        if not hello:
            await self._drop()
            raise DriverError("the connection closed before connection_established")
        return link, hello[0]

    async def _drop(self, *, reset: bool = False, clean: bool = False) -> None:
        """End the current connection as the client's own act (not observed as a close)."""
        link, self._link = self._link, None
        if link is None:
            return
        link.mine = True
        if clean and not link.closed:
            with contextlib.suppress(ConnectionClosed, TimeoutError, OSError):
                await asyncio.wait_for(link.ws.close(), 2)
        if reset:
            sock = link.ws.transport.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: the close sends RST, as a broken network does
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        link.ws.transport.abort()
        if link.reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(link.reader, 2)
        link.closed = True
        self._wake()

    async def _flush(self) -> None:
        """Send what was queued while disconnected, oldest first."""
        queued, self._queued = self._queued, []
        for message_id, frame in queued:
            await self._send_or_queue(message_id, frame)

    async def _send_or_queue(self, message_id: str, frame: str) -> None:
        link = self._link
        if link is not None and not link.closed:
            try:
                await link.ws.send(frame)
            except ConnectionClosed:
                pass
            else:
                self._carrier[message_id] = link.number
                return
        self._queued.append((message_id, frame))

    async def connect(self, timeout: float) -> Outcome:
        await self._drop()
        opened = await self._open(max(0.05, timeout))
        if isinstance(opened, Outcome):
            return opened
        _, hello = opened
        self.session = hello.user_id
        await self._flush()
        return Outcome(kind="new", session=hello.user_id, stream=hello.user_id)

    async def resume(
        self,
        timeout: float,
        *,
        token: Literal["current", "previous"] = "current",
        session_of: Driver | None = None,
    ) -> Outcome:
        if token != "current" or session_of is not None:
            raise DriverError("not offered: the protocol has no resume token or session id")
        if self.session is None:
            raise DriverError("resume: the client holds no session (it never connected)")
        deadline = asyncio.get_running_loop().time() + max(0.05, timeout)
        await self._drop()  # a half-open connection the client gives up on
        after = self._last
        opened = await self._open(max(0.05, timeout))
        if isinstance(opened, Outcome):
            return opened
        _, hello = opened
        if hello.user_id != self.session:
            await self._drop(clean=True)
            return Outcome(kind="rejected", reason=NOT_RECOVERED, replayed=0)
        left = max(0.05, deadline - asyncio.get_running_loop().time())
        try:
            turns = await self.fetch_history(left)
        except DriverError:
            await self._drop()
            raise
        stored = {t.message_id for t in turns if t.role == "user"}
        answered = [m for m, parts in self._parts.items() if any(parts)]
        if any(m not in stored for m in answered):
            await self._drop(clean=True)
            return Outcome(kind="rejected", reason=NOT_RECOVERED, replayed=0)
        await self._flush()
        return Outcome(
            kind="degraded",
            warnings=(NO_REPLAY,),
            replayed=0,
            session=hello.user_id,
            stream=hello.user_id,
            after=after,
        )

    async def disconnect(self, how: Literal["close", "reset"]) -> None:
        await self._drop(reset=how == "reset", clean=how == "close")

    async def aclose(self) -> None:
        await self._drop()

    # --- requests ------------------------------------------------------------------------

    async def send_message(self, text: str) -> str:
        message_id = f"{self.name}:{next(self._ids)}"
        frame = wire.encode(wire.UserMessage(message_id=message_id, content=text))
        await self._send_or_queue(message_id, frame)
        return message_id

    async def await_reply(self, message_id: str, timeout: float) -> int:
        queued = any(m == message_id for m, _ in self._queued)
        if message_id not in self._carrier and not queued:
            raise DriverError(f"no reply to wait for: {message_id} was not sent by this client")

        def complete() -> bool:
            return any(self._parts.get(message_id, ()))

        def gone() -> bool:
            # The reply comes only on the connection that carried the message.
            carrier = self._carrier.get(message_id)
            link = self._link
            return carrier is not None and (link is None or link.closed or link.number != carrier)

        await self._wait_for(lambda: complete() or gone(), timeout)
        parts = len(self._parts.get(message_id, ()))
        if complete():
            return parts
        if gone():
            raise DriverError(
                f"no complete reply to {message_id} ({parts} parts): the connection it was sent "
                "on is gone, and the protocol sends the rest nowhere else"
            )
        raise DriverError(f"no complete reply to {message_id} ({parts} parts) in {timeout:g} s")

    async def _request(self, message: wire.ClientMessage, answer: type[M], timeout: float) -> M:
        """Send a request; its answer is the next message of type ``answer`` on that connection."""
        what = wire.type_of(message)
        link = self._live(what)
        since = 0
        try:
            async with asyncio.timeout(timeout), self._requests:
                since = len(link.received)
                await link.ws.send(wire.encode(message))
                while not (link.closed or link.answers(answer, since)):
                    await self._changed.wait()
        except TimeoutError:
            raise DriverError(f"{what}: no answer in {timeout:g} s") from None
        except ConnectionClosed:
            raise DriverError(f"{what}: the connection closed") from None
        found = link.answers(answer, since)
        if not found:
            raise DriverError(f"{what}: the connection closed before the answer")
        return found[0]

    async def fetch_history(self, timeout: float, *, page_size: int | None = None) -> list[Turn]:
        if page_size is not None:
            raise DriverError("not offered: the protocol answers the whole history at once")
        answer = await self._request(
            wire.GetConversationHistory(), wire.ConversationHistory, timeout
        )
        return [
            Turn(index=i, role=e.role, message_id=e.message_id, text=e.content)
            for i, e in enumerate(answer.messages)
        ]

    async def fetch_context(self, timeout: float) -> Mapping[str, Any]:
        answer = await self._request(wire.GetAgentContext(), wire.AgentContext, timeout)
        return dict(answer.context)

    async def resend(self, message_id: str, *, renumber: bool, timeout: float) -> None:
        raise DriverError("not offered: the protocol numbers no message")

    async def send_raw(
        self, frame: str | bytes, timeout: float, *, until_close: bool = False
    ) -> RawAnswer:
        """Send a frame as is; wait for the first ``error`` answered after it (or, with
        ``until_close``, for the close), at most ``timeout``."""
        link = self._live("send")
        since = len(link.received)

        def errors() -> list[wire.ErrorMessage]:
            return link.answers(wire.ErrorMessage, since)

        with contextlib.suppress(ConnectionClosed):
            await link.ws.send(frame)
        await self._wait_for(lambda: link.closed or (not until_close and bool(errors())), timeout)
        first = errors()
        return RawAnswer(
            error=first[0].error if first else None,
            close=link.close_code if link.closed else None,
        )
