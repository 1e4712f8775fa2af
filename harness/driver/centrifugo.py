"""The driver for Centrifugo (https://centrifugal.dev), over ``websockets``.

It speaks Centrifugo's bidirectional JSON protocol (``harness.driver.centrifugo_wire``) and
maps the scenario language onto what Centrifugo offers, and nothing more (docs/drivers.md):

- a client is one user's connection, subscribed to that user's channel, ``chat:#<user>`` (a
  user-limited channel: only that user may subscribe). A **session** is one subscription's
  life: it begins with a fresh subscribe (named ``<channel>@<client id>`` after the connection
  that made it) and goes on through every recover from its position; the channel's history in
  one epoch, ``<channel>#<epoch>``, is the **stream**, which every session of the channel
  shares (positions continue across sessions);
- **chat** publishes ``{"id", "text"}`` into the channel and waits for the publication to
  come back to the client (the reply, one part: the message itself, not a separate answer, so
  it is delivered as kind ``publication``); every publication that arrives is a ``Delivered``
  at its channel **offset** (dense integers that go on across connections within one epoch);
- **connect** subscribes afresh: outcome ``new``, ``after`` the stream top it got;
- **resume** opens a new connection and subscribes with ``recover``, the last offset seen and
  the epoch. ``recovered: true`` is ``full`` (the missed publications come in the reply);
  anything else is ``degraded`` with warning ``not_recovered`` (and ``epoch_changed`` when the
  server lost the stream): Centrifugo then sends no publication at all and the subscription
  goes on from the stream top, a silent fresh start for an application that does not read the
  flag. In the same epoch the positions skipped are declared as ``missed``;
- **history** is the channel history (each publication a ``Turn``, its offset the index),
  read whole or in pages (``limit`` and ``since``, Centrifugo's history iteration);
- messages sent while disconnected, or whose publish got no reply before the connection died,
  are published after the next successful subscribe unless the stream already brought them
  back (Centrifugo's client publish has no idempotency key: after a ``degraded`` resume a
  message whose reply was lost may be published twice; after a ``full`` one, never);
- the server's ``{}`` pings are answered; with no frame for 1.5 ping intervals plus 1 s the
  driver gives the connection up as dead (half-open), as Centrifugo's SDKs do.

Not offered, so not declared (steps that need them are SKIPPED): ``context`` (Centrifugo
stores no agent context; presence is who is connected, not what a session knew),
``resume_previous_token`` (no resume credential: positions are not secrets, the JWT does not
rotate), ``notices`` (Centrifugo says nothing about a client's address), ``resend`` (Centrifugo
numbers no client message and answers none apart from its publication, so the harness's check
of a resend, which looks for a second answer, would pass on nothing; a message published twice
shows in the history instead: finding 2 of docs/servers.md).

For an existing deployment (``--target URL --driver centrifugo --token-env VAR``): the token
is a connection JWT; its ``sub`` names the user, and ``HARNESS_CENTRIFUGO_CHANNEL`` (default
``chat:#{user}``) the channel, which needs history, recovery and client publish allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import jwt
import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State

from harness.driver import centrifugo_wire as wire
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
from harness.targets.centrifugo import CentrifugoTarget

T = TypeVar("T")

ENV_CHANNEL: Final = "HARNESS_CENTRIFUGO_CHANNEL"
DEFAULT_CHANNEL: Final = "chat:#{user}"
FIRST_REQUEST_ID: Final = 1000
"""The driver numbers its commands from here, so hand-written raw frames with small ids get
answers it does not mistake for its own."""
HISTORY_LIMIT: Final = -1
"""All of the history (Centrifugo caps it at ``client.history_max_publication_limit``)."""
MAX_HISTORY_PAGES: Final = 1000
"""A bound on a paged read, whatever the server answers."""

INFO = DriverInfo(
    name="centrifugo",
    description=(
        "Centrifugo's bidirectional JSON protocol: one user-limited channel per user, "
        "recovery from channel history with offset and epoch"
    ),
    # Offsets: one more per publication in a channel, going on across connections within an
    # epoch. The client sees every publication of its own channel, so a hole is a loss.
    positions=PositionModel(order="dense", continues_across_sessions=True),
    capabilities=frozenset(
        {
            "chat",
            "resume",
            "take_over",
            "history",
            "history_pages",
            "raw_frames",
            "source_ip",
            "forwarded_for",
            "close_reason",
        }
    ),
)


def channel_for(user: str) -> str:
    """The channel a user's client subscribes to (``HARNESS_CENTRIFUGO_CHANNEL``)."""
    return os.environ.get(ENV_CHANNEL, DEFAULT_CHANNEL).format(user=user)


def jwt_subject(token: str) -> str:
    """The ``sub`` claim of a connection JWT (read, not verified: the server verifies)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else ""


def stream_name(channel: str, epoch: str) -> str:
    return f"{channel}#{epoch}"


def chat_fields(data: Any) -> tuple[str | None, str | None]:
    """The message id and text of a publication the harness published, if it is one."""
    if isinstance(data, dict):
        mid, text = data.get("id"), data.get("text")
        return (mid if isinstance(mid, str) else None, text if isinstance(text, str) else None)
    return None, None


class _LostError(Exception):
    """The connection ended while a command waited for its reply."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"connection closed ({code} {reason or ''})".strip())
        self.code, self.reason = code, reason


@dataclass
class _Waiter:
    future: asyncio.Future[Any] | None
    """None for a command nobody awaits (a publish)."""
    on_reply: Callable[[wire.Reply], Any]
    """Runs in the reader, in frame order, before later objects of the frame are handled."""


@dataclass
class _Pending:
    """A chat message whose publication has not come back yet."""

    text: str
    state: Literal["queued", "sent", "unknown", "acked"] = "queued"
    """queued: never sent; sent: on the live connection, no reply yet; unknown: sent on a
    connection that died before the reply; acked: the server accepted it."""


class CentrifugoDriver:
    """One client of a Centrifugo server: a connection subscribed to one channel."""

    info = INFO

    def __init__(self, config: ClientConfig, observe: Observe) -> None:
        self.name = config.name
        self.url = config.url
        self.credential = config.credential
        self._observe = observe
        self.user = jwt_subject(config.credential)
        self.channel = channel_for(self.user)
        self._route = config.route
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(FIRST_REQUEST_ID)
        self._waiting: dict[int, _Waiter] = {}
        self._epoch: str | None = None
        """The stream's epoch, once subscribed; None before the first subscribe."""
        self._offset = 0
        """The last position the client has in the channel's stream."""
        self._subscribed = False
        self._session: str | None = None
        """The subscription's life this client holds: set by a fresh subscribe, kept by recovers."""
        self._client_id = ""
        self._ping_s = 0
        self._pong = False
        self._closing_ourselves = False
        self._last_close: int | None = None
        self._counter = 0
        self._pending: dict[str, _Pending] = {}
        self._seen: set[str] = set()
        self._refused: dict[str, str] = {}
        self._raw_errors: list[str] = []
        self._changed = asyncio.Event()

    # --- waiting -------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, predicate: Callable[[], T | None], timeout: float) -> T:
        """Wait for ``predicate`` to give a value; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            while (value := predicate()) is None:
                await self._changed.wait()
        return value

    # --- the connection ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        ws = self._ws
        return ws is not None and ws.state is State.OPEN and self._subscribed

    def set_route(self, route: Route) -> None:
        self._route = route

    async def _open(self) -> Outcome | None:
        """Open a WebSocket and send ``connect``; a rejection as an ``Outcome``."""
        await self._drop()
        route = self._route
        headers = {"X-Forwarded-For": route.forwarded_for} if route.forwarded_for else {}
        extra: dict[str, Any] = {"local_addr": (route.source_ip, 0)} if route.source_ip else {}
        if route.connect_to is not None:
            # TCP goes to the proxy; the URL (Host header, TLS name) stays the server's.
            extra["host"], extra["port"] = route.connect_to
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                open_timeout=None,  # the caller bounds the whole attempt
                ping_interval=None,  # heartbeats are Centrifugo's own ({} pings)
                close_timeout=1,
                proxy=None,
                max_size=None,
                **extra,
            )
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            raise DriverError(f"open: {type(exc).__name__}: {exc}") from None
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws))
        if not self.user:
            raise DriverError("the credential has no `sub`: it names no user, so no channel")
        try:
            reply: wire.Reply = await self._request(
                "connect", {"token": self.credential, "name": "ws-continuity-harness"}
            )
        except _LostError as lost:
            # e.g. 3500 invalid token: Centrifugo answers a bad credential with a close.
            return Outcome(kind="rejected", reason=wire.reason_name(lost.reason or "closed"))
        if reply.error is not None or reply.connect is None:
            await self._drop()
            if reply.error is not None and reply.error.temporary:
                raise DriverError(f"connect: {reply.error.code} {reply.error.message}")
            message = reply.error.message if reply.error else "no connect result"
            return Outcome(kind="rejected", reason=wire.reason_name(message))
        self._ping_s, self._pong = reply.connect.ping, reply.connect.pong
        self._client_id = reply.connect.client
        return None

    def _silence_limit(self) -> float | None:
        return self._ping_s * 1.5 + 1.0 if self._ping_s > 0 else None

    async def _read(self, ws: ClientConnection) -> None:
        try:
            while True:
                limit = self._silence_limit()
                try:
                    frame = await (asyncio.wait_for(ws.recv(), limit) if limit else ws.recv())
                except TimeoutError:
                    # No ping in time: a half-open connection. Give it up, as SDKs do (not
                    # observed as a close: the server did not close it).
                    ws.transport.abort()
                    return
                await self._handle(ws, frame)
        except ConnectionClosed as exc:
            if ws is self._ws:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                reason = exc.rcvd.reason if exc.rcvd is not None else None
                self._last_close = code
                if not self._closing_ourselves:
                    name = wire.reason_name(reason) if reason else None
                    self._observe(Closed(code=code, reason=name))
                self._lost(code, reason)
        finally:
            if ws is self._ws:
                self._lost(None, None)

    async def _handle(self, ws: ClientConnection, frame: str | bytes) -> None:
        try:
            replies = wire.decode_frame(frame)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            self._observe(Violation(message=f"undecodable frame: {exc}"))
            return
        for reply in replies:
            if wire.is_ping(reply):
                if self._pong:
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send("{}")
                continue
            if reply.id:
                self._answer(reply)
            elif (push := reply.push) is not None and push.pub and push.channel == self.channel:
                self._publication(push.pub)
        self._notify()

    def _answer(self, reply: wire.Reply) -> None:
        waiter = self._waiting.pop(reply.id, None)
        if waiter is None:
            if reply.error is not None:  # the answer to a raw frame
                self._raw_errors.append(wire.reason_name(reply.error.message))
            return
        try:
            value = waiter.on_reply(reply)
        except Exception as exc:  # handed to the one who waits
            if waiter.future is not None and not waiter.future.done():
                waiter.future.set_exception(exc)
            return
        if waiter.future is not None and not waiter.future.done():
            waiter.future.set_result(value)

    def _lost(self, code: int | None, reason: str | None) -> None:
        """The connection is gone: fail every command waiting on it."""
        self._ws = None
        self._subscribed = False
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            if waiter.future is not None and not waiter.future.done():
                waiter.future.set_exception(_LostError(code, reason))
        for pending in self._pending.values():
            if pending.state == "sent":
                pending.state = "unknown"
        self._notify()

    async def _request(
        self, method: str, params: dict[str, Any], on_reply: Callable[[wire.Reply], T] | None = None
    ) -> T:
        ws = self._ws
        if ws is None:
            raise _LostError(self._last_close, None)
        request_id = next(self._ids)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = _Waiter(future, on_reply or (lambda reply: reply))
        try:
            await ws.send(wire.command(request_id, method, params))
        except ConnectionClosed:
            self._waiting.pop(request_id, None)
            raise _LostError(self._last_close, None) from None
        return await future

    async def _drop(self) -> None:
        """Cut the connection abruptly (no close handshake), as a network drop would."""
        ws, reader = self._ws, self._reader
        self._closing_ourselves = True
        try:
            if ws is not None:
                ws.transport.abort()
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            self._reader = None
            if self._ws is ws:
                self._lost(None, None)
            self._closing_ourselves = False

    # --- publications --------------------------------------------------------------------

    def _publication(self, pub: wire.Publication) -> None:
        if pub.offset <= 0:
            self._observe(
                Violation(message=f"publication in {self.channel} without an offset (no history?)")
            )
            return
        if pub.epoch and self._epoch is not None and pub.epoch != self._epoch:
            self._observe(
                Violation(message=f"publication of epoch {pub.epoch} in stream {self._epoch}")
            )
        mid, text = chat_fields(pub.data)
        self._observe(
            Delivered(
                stream=stream_name(self.channel, self._epoch or pub.epoch),
                position=pub.offset,
                kind="publication",
                reply_to=mid,
                text=text,
                final=True,
            )
        )
        self._offset = max(self._offset, pub.offset)
        if mid is not None:
            self._seen.add(mid)
            self._pending.pop(mid, None)

    # --- sessions ------------------------------------------------------------------------

    async def connect(self, timeout: float) -> Outcome:
        try:
            async with asyncio.timeout(max(0.05, timeout)):
                rejected = await self._open()
                if rejected is not None:
                    return rejected
                outcome = await self._subscribe(self.channel, None)
        except TimeoutError:
            await self._drop()
            raise DriverError(f"connect: no answer within {timeout:g} s") from None
        except _LostError as lost:
            raise DriverError(f"connect: {lost}") from None
        return await self._after_subscribe(outcome)

    async def resume(
        self,
        timeout: float,
        *,
        token: Literal["current", "previous"] = "current",
        session_of: Driver | None = None,
    ) -> Outcome:
        if token == "previous":
            raise DriverError(
                "Centrifugo has no resume credential to replay (positions are not secrets)"
            )
        source = self if session_of is None else session_of
        if not isinstance(source, CentrifugoDriver):
            raise DriverError("take over: the other client is not a Centrifugo client")
        if source._epoch is None:
            raise DriverError(f"resume: {source.name} has no stream position to recover from")
        position = (source._offset, source._epoch)
        session = source._session
        try:
            async with asyncio.timeout(max(0.05, timeout)):
                rejected = await self._open()
                if rejected is not None:
                    return rejected
                outcome = await self._subscribe(source.channel, position, session)
        except TimeoutError:
            await self._drop()
            raise DriverError(f"resume: no answer within {timeout:g} s") from None
        except _LostError as lost:
            raise DriverError(f"resume: {lost}") from None
        return await self._after_subscribe(outcome)

    async def _subscribe(
        self, channel: str, recover: tuple[int, str] | None, session: str | None = None
    ) -> Outcome:
        params: dict[str, Any] = {"channel": channel}
        if recover is not None:
            params |= {"recover": True, "offset": recover[0], "epoch": recover[1]}
        return await self._request(
            "subscribe",
            params,
            lambda reply: self._subscribed_to(channel, recover, reply, session),
        )

    def _subscribed_to(
        self,
        channel: str,
        recover: tuple[int, str] | None,
        reply: wire.Reply,
        session: str | None = None,
    ) -> Outcome:
        """The outcome of a subscribe reply; runs in the reader, so the recovered
        publications are observed before anything that came after them."""
        if reply.error is not None:
            if reply.error.temporary:
                raise DriverError(f"subscribe: {reply.error.code} {reply.error.message}")
            return Outcome(kind="rejected", reason=wire.reason_name(reply.error.message))
        result = reply.subscribe or wire.SubscribeResult()
        self.channel, self._subscribed = channel, True
        if recover is None:
            self._epoch, self._offset = result.epoch, result.offset
            self._session = f"{channel}@{self._client_id}"
            return Outcome(
                kind="new",
                session=self._session,
                stream=stream_name(channel, result.epoch),
                after=result.offset,
            )
        offset, epoch = recover
        self._session = session or self._session
        if result.recovered:
            self._epoch, self._offset = epoch, offset
            for pub in result.publications:
                self._publication(pub)
            return Outcome(
                kind="full",
                session=self._session,
                stream=stream_name(channel, epoch),
                after=offset,
                replayed=len(result.publications),
            )
        # Not recovered: no publications, the subscription goes on from the stream top.
        self._epoch, self._offset = result.epoch, result.offset
        if result.epoch != epoch:
            return Outcome(
                kind="degraded",
                warnings=("epoch_changed", "not_recovered"),
                session=self._session,
                stream=stream_name(channel, result.epoch),
                after=result.offset,
                replayed=0,
            )
        skipped = (offset + 1, result.offset) if result.offset > offset else None
        return Outcome(
            kind="degraded",
            warnings=("not_recovered",),
            session=self._session,
            stream=stream_name(channel, epoch),
            after=offset,
            missed=skipped,
            replayed=0,
        )

    async def _after_subscribe(self, outcome: Outcome) -> Outcome:
        if outcome.kind == "rejected":
            await self._drop()
            return outcome
        for mid, pending in list(self._pending.items()):
            if pending.state in ("queued", "unknown"):
                await self._publish(mid, pending)
        return outcome

    # --- chat, history -------------------------------------------------------------------

    async def send_message(self, text: str) -> str:
        self._counter += 1
        mid = f"{self.name}-{self._counter}"
        pending = self._pending[mid] = _Pending(text)
        if self.connected:
            await self._publish(mid, pending)
        return mid

    async def _publish(self, mid: str, pending: _Pending) -> None:
        ws = self._ws
        if ws is None:
            return
        request_id = next(self._ids)

        def answered(reply: wire.Reply) -> None:
            if reply.error is not None:
                self._refused[mid] = wire.reason_name(reply.error.message)
                self._pending.pop(mid, None)
            elif mid in self._pending:
                pending.state = "acked"

        self._waiting[request_id] = _Waiter(None, answered)
        pending.state = "sent"
        params = {"channel": self.channel, "data": {"id": mid, "text": pending.text}}
        try:
            await ws.send(wire.command(request_id, "publish", params))
        except ConnectionClosed:
            self._waiting.pop(request_id, None)
            pending.state = "unknown"

    async def await_reply(self, message_id: str, timeout: float) -> int:
        def done() -> bool | None:
            return True if message_id in self._seen or message_id in self._refused else None

        try:
            await self._until(done, timeout)
        except TimeoutError:
            raise DriverError(
                f"no publication of {message_id} came back within {timeout:g} s"
            ) from None
        if message_id in self._refused:
            raise DriverError(f"publish of {message_id} refused: {self._refused[message_id]}")
        return 1

    async def resend(self, message_id: str, *, renumber: bool, timeout: float) -> None:
        raise DriverError("the centrifugo driver declares no `resend` (see the module's doc)")

    async def fetch_history(self, timeout: float, *, page_size: int | None = None) -> list[Turn]:
        """The channel's history, oldest first: each publication a turn at its offset; with
        ``page_size``, read ``page_size`` publications at a time, each page since the last."""
        if not self.connected:
            raise DriverError("history: not connected")
        publications: list[wire.Publication] = []
        try:
            async with asyncio.timeout(timeout):
                if page_size is None:
                    publications = list(
                        (await self._history_page(HISTORY_LIMIT, None)).publications
                    )
                else:
                    since: dict[str, Any] | None = None
                    for _ in range(MAX_HISTORY_PAGES):
                        page = await self._history_page(page_size, since)
                        publications += page.publications
                        if len(page.publications) < page_size:
                            break
                        since = {"offset": page.publications[-1].offset, "epoch": page.epoch}
        except TimeoutError:
            raise DriverError(f"history: no answer within {timeout:g} s") from None
        except _LostError as lost:
            raise DriverError(f"history: {lost}") from None
        turns = []
        for pub in publications:
            mid, text = chat_fields(pub.data)
            turns.append(
                Turn(
                    index=pub.offset,
                    role="user" if mid is not None else "publication",
                    message_id=mid or f"offset:{pub.offset}",
                    text=text if text is not None else wire.encode(pub.data),
                )
            )
        return turns

    async def _history_page(self, limit: int, since: dict[str, Any] | None) -> wire.HistoryResult:
        params: dict[str, Any] = {"channel": self.channel, "limit": limit}
        if since is not None:
            params["since"] = since
        reply: wire.Reply = await self._request("history", params)
        if reply.error is not None or reply.history is None:
            raise DriverError(f"history: {reply.error.message if reply.error else 'no result'}")
        return reply.history

    async def fetch_context(self, timeout: float) -> Mapping[str, Any]:
        raise DriverError("Centrifugo stores no agent context (the driver declares no `context`)")

    # --- raw frames, disconnects ---------------------------------------------------------

    async def send_raw(
        self, frame: str | bytes, timeout: float, *, until_close: bool = False
    ) -> RawAnswer:
        """Send a frame as is; report the first error answered to no command of the driver's
        own (or, with ``until_close``, wait for the close) and the close code, if closed."""
        ws = self._ws
        if ws is None:
            raise DriverError("send: not connected")
        seen = len(self._raw_errors)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(frame)

        def answered() -> bool | None:
            if self._ws is not ws:
                return True
            if not until_close and len(self._raw_errors) > seen:
                return True
            return None

        with contextlib.suppress(TimeoutError):
            await self._until(answered, timeout)
        error = self._raw_errors[seen] if len(self._raw_errors) > seen else None
        close = self._last_close if self._ws is not ws else None
        return RawAnswer(error=error, close=close)

    async def disconnect(self, how: Literal["close", "reset"]) -> None:
        ws = self._ws
        if ws is None:
            return
        if how == "close":
            self._closing_ourselves = True
            try:
                with contextlib.suppress(ConnectionClosed):
                    await ws.close(1000)
            finally:
                await self._drop()
            return
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self._drop()

    async def aclose(self) -> None:
        await self._drop()


class EmbeddedCentrifugo:
    """A real Centrifugo (memory engine) per scenario; it has no virtual clock."""

    def capabilities(self, *, virtual_clock: bool) -> frozenset[str]:
        return CentrifugoTarget.capabilities

    def target(self, scenario: Scenario, *, virtual_clock: bool) -> Target:
        return CentrifugoTarget()


class CentrifugoFactory:
    """The entry point of the ``centrifugo`` driver (``ws_continuity.drivers``)."""

    info = INFO
    embedded: EmbeddedTargets = EmbeddedCentrifugo()

    def __call__(self, config: ClientConfig, observe: Observe) -> Driver:
        # Returned as a `Driver`: mypy checks here that CentrifugoDriver meets the contract.
        return CentrifugoDriver(config, observe)


factory: DriverFactory = CentrifugoFactory()

__all__ = ["INFO", "CentrifugoDriver", "CentrifugoFactory", "EmbeddedCentrifugo", "factory"]
