"""The ``memory`` driver: the reference protocol, over a ``MemoryWorld``'s links, no sockets.

It drives the protocol's own client state machine (``ClientProtocol``) through the one codec,
as the reference driver does over a WebSocket, and reports the same neutral observations: an
``Outcome`` for each welcome, resumed or rejected, a ``Delivered`` for every numbered frame as
the link brought it (duplicates the protocol client discarded too), notices, closes with the
reason the server gave, and violations. What differs is only the carrier: frames move on the
world's in-memory links (``harness.targets.memory``), which its fault layer
(``harness.faults.memory``) can break, so the runner and the checkers get fast tests of every
step kind with no socket and no Toxiproxy.

The driver finds its world by the target's URL (``memory://world-N/ws``): use it with a
``MemoryTarget``. Positions are the protocol's ``seq``, as for the reference driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeVar

import msgspec

from harness.driver.base import (
    ClientConfig,
    Driver,
    DriverError,
    DriverFactory,
    DriverInfo,
    Observe,
    PositionModel,
    RawAnswer,
    Route,
)
from harness.driver.reference import delivered
from harness.history import Closed, Delivered, Notice, Outcome, Terms, Turn, Violation
from harness.targets.memory import Link, LinkRefusedError, find_world
from reference_server.protocol import (
    Attached,
    ClientEvent,
    ClientProtocol,
    ClientState,
    DuplicateDelivery,
    LocalProtocolError,
    RejectedByServer,
    RemoteProtocolError,
    ServerClosing,
    UnnumberedError,
    codec,
)
from reference_server.protocol import Delivered as ProtocolDelivered
from reference_server.protocol.messages import (
    AgentContext,
    ConversationHistory,
    ReplyChunk,
    SecurityNotice,
    ServerSequenced,
    UserMessage,
)

__all__ = ["INFO", "MemoryDriver", "MemoryFactory", "factory"]

T = TypeVar("T")
HISTORY_PAGE: Final = 200
_LIVE: Final = frozenset({ClientState.CONNECTING, ClientState.RESUMING, ClientState.ATTACHED})

INFO: Final = DriverInfo(
    name="memory",
    description="the reference protocol over an in-memory world with no sockets (MemoryTarget)",
    positions=PositionModel(order="dense", continues_across_sessions=False),
    capabilities=frozenset(
        {
            "chat",
            "resume",
            "resume_previous_token",
            "take_over",
            "history",
            "history_pages",
            "context",
            "raw_frames",
            "resend",
            "source_ip",
            "forwarded_for",
            "notices",
            "close_reason",
        }
    ),
)


class MemoryDriver:
    """One client of a ``MemoryWorld``."""

    info = INFO

    def __init__(self, config: ClientConfig, observe: Observe) -> None:
        self.name = config.name
        self.url = config.url
        self.credential = config.credential
        self.route = config.route
        self.protocol = ClientProtocol(on_gap="report", client_name=config.name)
        self._sent: dict[str, UserMessage] = {}
        self.link: Link | None = None
        self.events: list[ClientEvent] = []
        self.close_codes: list[int | None] = []
        """Codes of the closes the server or the network made (not the client's own)."""
        self.tokens_seen: list[str] = []
        self._observe = observe
        self._by_request: dict[str, list[ServerSequenced]] = {}
        self._changed = asyncio.Event()
        self._closing_reason: str | None = None

    # --- the link's client end (harness.targets.memory.Endpoint) -------------------------

    def frame_received(self, data: bytes) -> None:
        if self.protocol.state not in _LIVE:
            return  # told to go (rejected, closing): only the close is still to come
        try:
            events = self.protocol.receive(data)
        except RemoteProtocolError as exc:
            self._observe(Violation(message=f"{exc.error_code}: {exc.message}"))
        else:
            self.events.extend(events)
            self._on_events(events)
        self._flush()
        self._changed.set()

    def link_closed(self, code: int | None) -> None:
        self.link = None
        self.close_codes.append(code)
        if self.protocol.state in _LIVE:
            self.protocol.connection_lost()
        self._observe(Closed(code=code, reason=self._closing_reason))
        self._closing_reason = None
        self._changed.set()

    def _on_events(self, events: list[ClientEvent]) -> None:
        for event in events:
            if isinstance(event, ProtocolDelivered):
                message = event.message
                self._observe(delivered(self._stream, message))
                reply_to = getattr(message, "in_reply_to", None)
                if reply_to is not None:
                    self._by_request.setdefault(reply_to, []).append(message)
                if isinstance(message, SecurityNotice):
                    detail = {
                        "previous": message.previous_ip,
                        "current": message.current_ip,
                        "policy": message.policy,
                    }
                    self._observe(Notice(kind="ip_change", detail=detail))
            elif isinstance(event, DuplicateDelivery):
                # Discarded by the protocol client, but the server did send it again.
                self._observe(
                    Delivered(stream=self._stream, position=event.seq, kind="discarded_duplicate")
                )
            elif isinstance(event, ServerClosing):
                self._closing_reason = event.closing.reason

    @property
    def _stream(self) -> str:
        session = self.protocol.session
        return f"{session.session_id}#{session.epoch}" if session else "-"

    # --- connections -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.link is not None and self.link.client_open and self.protocol.state in _LIVE

    def set_route(self, route: Route) -> None:
        self.route = route

    def _open(self, kind: str) -> Link:
        self._drop()
        world = find_world(self.url)
        if world is None:
            raise DriverError(
                f"{kind}: no memory world at {self.url} (the memory driver needs a MemoryTarget)"
            )
        try:
            self.link = world.open(
                self,
                credential=self.credential,
                proxied=self.route.connect_to is not None,
                source_ip=self.route.source_ip,
                forwarded_for=self.route.forwarded_for,
            )
        except LinkRefusedError as exc:
            raise DriverError(f"{kind}: {exc}") from None
        return self.link

    def _drop(self) -> None:
        """Reset the connection, if there is one; the server notices at once."""
        link, self.link = self.link, None
        if link is not None:
            link.close("reset")
        if self.protocol.state in _LIVE:
            self.protocol.connection_lost()
        self._changed.set()

    def _flush(self) -> None:
        frames = self.protocol.data_to_send()
        link = self.link
        if link is not None:
            for frame in frames:
                link.send(frame)

    async def _wait(
        self, found: Callable[[], T | None], timeout: float, what: str, *, while_connected: bool
    ) -> T:
        """Wait until ``found`` returns something; ``DriverError`` after ``timeout``, or at
        once when the connection is lost and ``while_connected``."""
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                while True:
                    value = found()
                    if value is not None:
                        return value
                    if while_connected and not self.connected:
                        raise DriverError(f"{what}: the connection was lost")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise DriverError(f"{what}: no answer within {timeout:g} s") from None

    async def connect(self, timeout: float) -> Outcome:
        return await self._attempt("connect", self.protocol.hello, timeout, after=0)

    async def resume(
        self,
        timeout: float,
        *,
        token: Literal["current", "previous"] = "current",
        session_of: Driver | None = None,
    ) -> Outcome:
        if self.connected:  # a half-open connection the client gives up on
            self._drop()
        if session_of is not None:
            if not isinstance(session_of, MemoryDriver):
                raise DriverError("take over: the other client is not a memory client")
            other = session_of.protocol
            if other.session is None:
                raise DriverError(f"take over: {session_of.name} has no session to take over")
            # The other client's session, position and request numbering, none of this
            # client's own unacknowledged requests (of a session it held before).
            self.protocol.session, self.protocol.last_seq = other.session, other.last_seq
            self.protocol.next_seq = other.next_seq
            self.protocol.unacked.clear()
            self.protocol.state = ClientState.DISCONNECTED
        if token == "previous":
            return await self._replay_previous_token(timeout)
        return await self._attempt(
            "resume", self.protocol.resume, timeout, after=self.protocol.last_seq
        )

    async def _replay_previous_token(self, timeout: float) -> Outcome:
        """Resume with the token held before the last resume, on a copy of the protocol state,
        so this client's own state (and current token) stays as it was."""
        own = self.protocol
        if len(self.tokens_seen) < 2 or own.session is None:
            raise DriverError("resume: no previous resume token: the client has resumed no session")
        thief = ClientProtocol(on_gap="report", client_name=self.name)
        thief.session = dataclasses.replace(own.session, resume_token=self.tokens_seen[-2])
        thief.last_seq, thief.next_seq = own.last_seq, own.next_seq
        thief.state = ClientState.DISCONNECTED
        self.protocol = thief
        try:
            return await self._attempt("resume", thief.resume, timeout, after=own.last_seq)
        finally:
            self._drop()
            self.protocol = own

    async def _attempt(
        self, kind: str, start: Callable[[], None], timeout: float, *, after: int
    ) -> Outcome:
        if kind == "resume" and self.protocol.session is None:
            raise DriverError("resume: the client has no session to resume")
        self._open(kind)
        seen = len(self.events)
        try:
            start()
        except LocalProtocolError as exc:
            self._drop()
            raise DriverError(f"{kind}: {exc}") from None
        self._flush()

        def answered() -> Attached | RejectedByServer | None:
            for event in self.events[seen:]:
                if isinstance(event, Attached | RejectedByServer):
                    return event
            return None

        answer: Attached | RejectedByServer = await self._wait(
            answered,
            max(0.05, timeout),
            f"{kind}: welcome, resumed or rejected",
            while_connected=True,
        )
        if isinstance(answer, RejectedByServer):
            retry = answer.retry_after_ms / 1000 if answer.retry_after_ms else None
            return Outcome(kind="rejected", reason=answer.reason, retry_after=retry)
        return self._outcome(answer, after)

    def _outcome(self, attached: Attached, after: int) -> Outcome:
        session = self.protocol.session
        terms = None
        if session is not None:
            self.tokens_seen.append(session.resume_token)
            terms = Terms(
                full_window_s=session.windows.full_s,
                resumable_window_s=session.windows.resumable_s,
                ip_policy=session.ip_policy,
                capabilities=tuple(session.capabilities),
            )
        missed = (attached.missed.first, attached.missed.last) if attached.missed else None
        epoch_changed = any(w.code == "epoch_changed" for w in attached.warnings)
        return Outcome(
            kind=attached.outcome,
            warnings=tuple(w.code for w in attached.warnings),
            gap_s=attached.gap_s,
            replayed=attached.replay_count,
            missed=missed,
            session=attached.session_id,
            stream=f"{attached.session_id}#{attached.epoch}",
            # A new epoch is a new stream: what it holds starts where the server says.
            after=attached.replay_from - 1 if epoch_changed else after,
            terms=terms,
        )

    async def disconnect(self, how: Literal["close", "reset"]) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.close(how)
        if self.protocol.state in _LIVE:
            self.protocol.connection_lost()
        self._changed.set()

    async def aclose(self) -> None:
        self._drop()

    # --- requests ------------------------------------------------------------------------

    async def send_message(self, text: str) -> str:
        try:
            request = self.protocol.send_user_message(text)
        except LocalProtocolError as exc:
            raise DriverError(f"send: {exc}") from None
        self._flush()
        self._sent[request.id] = request
        return request.id

    async def resend(self, message_id: str, *, renumber: bool, timeout: float) -> None:
        """As the reference driver: the same request under its own seq or a new one, then a
        context request as a barrier."""
        request = self._sent.get(message_id)
        if request is None:
            raise DriverError(f"resend: {message_id} was not sent by this client")
        link = self.link
        if link is None or not self.connected:
            raise DriverError("resend: not connected")
        if renumber:
            try:
                self.protocol.send_user_message(request.text, message_id)
            except LocalProtocolError as exc:
                raise DriverError(f"resend: {exc}") from None
            self._flush()
        else:
            link.send(codec.encode(request))
        await self.fetch_context(timeout)

    async def await_reply(self, message_id: str, timeout: float) -> int:
        def complete() -> list[ServerSequenced] | None:
            reply = self._by_request.get(message_id, [])
            done = any(isinstance(m, ReplyChunk) and m.final for m in reply)
            return list(reply) if done else None

        reply = await self._wait(
            complete, timeout, f"no complete reply to {message_id}", while_connected=True
        )
        return len(reply)

    async def _answer(self, request_id: str, kind: type[T], timeout: float, what: str) -> T:
        def found() -> T | None:
            for message in self._by_request.get(request_id, ()):
                if isinstance(message, kind):
                    return message
            return None

        return await self._wait(found, timeout, what, while_connected=True)

    async def fetch_history(self, timeout: float, *, page_size: int | None = None) -> list[Turn]:
        """Every stored turn, oldest first, fetched page by page."""
        turns: list[Turn] = []
        before: int | None = None
        while True:
            try:
                request = self.protocol.request_history(before, page_size or HISTORY_PAGE)
            except LocalProtocolError as exc:
                raise DriverError(f"history: {exc}") from None
            self._flush()
            page = await self._answer(request.id, ConversationHistory, timeout, "history")
            turns[:0] = [
                Turn(index=e.index, role=e.role, message_id=e.message_id, text=e.text)
                for e in page.entries
            ]
            if page.next_before is None:
                return turns
            before = page.next_before

    async def fetch_context(self, timeout: float) -> Mapping[str, Any]:
        try:
            request = self.protocol.request_agent_context()
        except LocalProtocolError as exc:
            raise DriverError(f"context: {exc}") from None
        self._flush()
        answer = await self._answer(request.id, AgentContext, timeout, "context")
        context: dict[str, Any] = msgspec.to_builtins(answer.context)
        return context

    async def send_raw(
        self, frame: str | bytes, timeout: float, *, until_close: bool = False
    ) -> RawAnswer:
        """Send a frame as is on the current connection; report the answer and any close.

        The wait ends at the first error answered, or with ``until_close`` only when the
        connection closes (an error is sent before the close that follows it)."""
        link = self.link
        if link is None or not self.connected:
            raise DriverError("send: not connected")
        seen, closes = len(self.events), len(self.close_codes)
        binary = isinstance(frame, bytes)
        link.send(frame if isinstance(frame, bytes) else frame.encode(), binary=binary)

        def answered() -> bool | None:
            if not self.connected:
                return True
            if not until_close and any(isinstance(e, UnnumberedError) for e in self.events[seen:]):
                return True
            return None

        with contextlib.suppress(DriverError):  # no answer in time: error and close stay None
            await self._wait(answered, timeout, "an answer to the raw frame", while_connected=False)
        errors = [e for e in self.events[seen:] if isinstance(e, UnnumberedError)]
        code = errors[0].error.code if errors else None
        close = self.close_codes[-1] if len(self.close_codes) > closes else None
        return RawAnswer(error=code, close=close)


class MemoryFactory:
    """The entry point of the ``memory`` driver. It brings no ``embedded`` target: the engine
    puts a Toxiproxy proxy in front of every target, and Toxiproxy cannot act on in-memory
    links (use ``MemoryTarget`` and ``MemoryFaults`` with ``ScenarioRun`` directly)."""

    info = INFO

    def __call__(self, config: ClientConfig, observe: Observe) -> Driver:
        # Returned as a `Driver`: mypy checks here that MemoryDriver meets the contract.
        return MemoryDriver(config, observe)


factory: DriverFactory = MemoryFactory()
