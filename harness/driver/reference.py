"""The driver for the reference protocol (docs/protocol.md), over ``AsyncClient``.

It is the only module of the harness that knows the reference protocol's messages. It turns
them into neutral history bodies: an ``Outcome`` for each welcome, resumed or rejected, and a
``Delivered`` observation for every numbered frame as the wire brought it (a frame the
protocol client discarded as a duplicate is observed too, so checkers see what the server
sent, not what the client kept).

Positions are the protocol's ``seq``: dense integers from 1 in each session, continued across
resumes of that session; a new session, or a new epoch (the server lost the stream, §8.1),
starts a new stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from harness.driver import connect_errors
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
from harness.history import Closed, Delivered, Notice, Outcome, Terms, Turn, Violation
from harness.scenario.model import Scenario
from harness.targets.base import Target
from harness.targets.cluster import ClusterTarget
from harness.targets.embedded import PLANTED_FAULTS, EmbeddedTarget, describe_fault
from reference_server import admin
from reference_server.aio_client import AsyncClient, ConnectionLostError, HandshakeRefusedError
from reference_server.protocol import (
    Acknowledged,
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
    ToolCall,
    UserMessage,
)

HISTORY_PAGE = 200

INFO = DriverInfo(
    name="reference",
    description="the reference reconnection protocol (docs/protocol.md)",
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


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header else None
    except ValueError:
        return None


class ReferenceDriver:
    """One client of a server that speaks the reference protocol."""

    info = INFO

    def __init__(self, config: ClientConfig, observe: Observe) -> None:
        self.name = config.name
        self._observe = observe
        self.client = AsyncClient(config.url, config.credential, on_gap="report")
        self.client.on_events = self._on_events
        self.client.on_close = self._on_close
        self.client.on_error = self._on_error
        self.tokens_seen: list[str] = []
        self._sent: dict[str, UserMessage] = {}
        self._closing_reason: str | None = None
        self._not_before = 0.0
        """When the server last asked this client to wait (``retry_after_ms``): not before."""
        self._closing_ourselves = False
        self.set_route(config.route)

    # --- observations --------------------------------------------------------------------

    @property
    def _stream(self) -> str:
        session = self.client.protocol.session
        return f"{session.session_id}#{session.epoch}" if session else "-"

    def _on_events(self, events: list[ClientEvent]) -> None:
        # Exact types, the common ones first: an isinstance() against a msgspec Struct class
        # that does not match costs about 1,400 instructions (valgrind), and an ack event went
        # through four of them. The protocol client's events are exactly these classes.
        for event in events:
            if type(event) is ProtocolDelivered:
                self._observe(delivered(self._stream, event.message))
                message = event.message
                if type(message) is SecurityNotice:
                    detail = {
                        "previous": message.previous_ip,
                        "current": message.current_ip,
                        "policy": message.policy,
                    }
                    self._observe(Notice(kind="ip_change", detail=detail))
            elif type(event) is Acknowledged:
                continue
            elif isinstance(event, DuplicateDelivery):
                # Discarded by the protocol client, but the server did send it again.
                self._observe(
                    Delivered(stream=self._stream, position=event.seq, kind="discarded_duplicate")
                )
            elif isinstance(event, ServerClosing):
                self._closing_reason = event.closing.reason
            elif isinstance(event, UnnumberedError) and event.error.retry_after_ms:
                # §12: a client closed for its rate waits at least this before reconnecting.
                wait = event.error.retry_after_ms / 1000
                self._not_before = max(self._not_before, time.monotonic() + wait)

    def _on_close(self, code: int | None) -> None:
        if self._closing_ourselves:
            return
        self._observe(Closed(code=code, reason=self._closing_reason))
        self._closing_reason = None

    def _on_error(self, error: RemoteProtocolError) -> None:
        self._observe(Violation(message=f"{error.error_code}: {error.message}"))

    # --- sessions ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.client.connected

    def set_route(self, route: Route) -> None:
        self.client.connect_to = route.connect_to
        self.client.source_ip = route.source_ip
        if route.forwarded_for:
            self.client.headers["X-Forwarded-For"] = route.forwarded_for
        else:
            self.client.headers.pop("X-Forwarded-For", None)

    def set_credential(self, credential: str) -> None:
        """Use a new credential from the next connection on."""
        self.client.token = credential

    async def connect(self, timeout: float) -> Outcome:
        await self._honour_retry_after(timeout)
        return await self._attempt("connect", self.client.connect, timeout, after=0)

    async def _honour_retry_after(self, timeout: float) -> None:
        """Wait out the server's retry-after from the last close, within ``timeout``."""
        wait = self._not_before - time.monotonic()
        if wait > 0:
            if wait >= timeout:
                raise DriverError(
                    f"the server asked this client to wait {wait:.1f} s before reconnecting, "
                    f"longer than the {timeout:g} s allowed"
                )
            await asyncio.sleep(wait)

    async def resume(
        self,
        timeout: float,
        *,
        token: Literal["current", "previous"] = "current",
        session_of: Driver | None = None,
    ) -> Outcome:
        if self.client.connected:  # a half-open connection the client gives up on
            await self._drop()
        protocol = self.client.protocol
        if session_of is not None:
            if not isinstance(session_of, ReferenceDriver):
                raise DriverError("take over: the other client is not a reference client")
            other = session_of.client.protocol
            if other.session is None:
                raise DriverError(f"{session_of.name} has no session to take over")
            # The other client's session, position and request numbering; none of this
            # client's own unacknowledged requests, which belong to a session it held before
            # (sent again into this one, they would be a protocol error).
            protocol.session, protocol.last_seq = other.session, other.last_seq
            protocol.next_seq = other.next_seq
            protocol.unacked.clear()
            protocol.state = ClientState.DISCONNECTED
        if protocol.session is None:
            raise DriverError("resume: the client holds no session to resume")
        if protocol.state is ClientState.CLOSED:  # a final rejection or close ended it (§4.5)
            raise DriverError(
                "resume: the client holds no session to resume: the server ended it with a "
                "final answer"
            )
        await self._honour_retry_after(timeout)
        if token == "previous":
            return await self._replay_previous_token(timeout)
        return await self._attempt("resume", self.client.resume, timeout, after=protocol.last_seq)

    async def _replay_previous_token(self, timeout: float) -> Outcome:
        """Resume with the token held before the last resume, on a copy of the protocol state,
        so the rightful client's own state (and current token) stays as it was."""
        own = self.client.protocol
        if len(self.tokens_seen) < 2 or own.session is None:
            raise DriverError("no previous resume token: the client has resumed no session")
        thief = ClientProtocol(on_gap="report")
        thief.session = dataclasses.replace(own.session, resume_token=self.tokens_seen[-2])
        thief.last_seq, thief.next_seq = own.last_seq, own.next_seq
        thief.state = ClientState.DISCONNECTED
        self.client.protocol = thief
        try:
            return await self._attempt("resume", self.client.resume, timeout, after=own.last_seq)
        finally:
            await self._drop()
            self.client.protocol = own

    async def _attempt(self, kind: str, how: Any, timeout: float, *, after: int) -> Outcome:
        try:
            answer = await how(max(0.05, timeout))
        except HandshakeRefusedError as exc:
            said = connect_errors.describe(exc, self.client.url, status=exc.status, body=exc.body)
            raise DriverError(f"{kind}: {said}", retry_after=_seconds(exc.retry_after)) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            # InvalidHandshake: the network broke the HTTP upgrade (no or a cut response).
            said = connect_errors.describe(exc, self.client.url)
            raise DriverError(f"{kind}: {said}") from None
        except ConnectionLostError as exc:
            raise DriverError(
                f"{kind}: the connection was lost during the handshake: {exc}"
            ) from None
        if isinstance(answer, RejectedByServer):
            after_s = answer.retry_after_ms / 1000 if answer.retry_after_ms else None
            return Outcome(kind="rejected", reason=answer.reason, retry_after=after_s)
        return self._outcome(answer, after)

    def _outcome(self, attached: Attached, after: int) -> Outcome:
        session = self.client.protocol.session
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
        return Outcome(
            kind=attached.outcome,
            warnings=tuple(w.code for w in attached.warnings),
            gap_s=attached.gap_s,
            replayed=attached.replay_count,
            missed=missed,
            session=attached.session_id,
            stream=f"{attached.session_id}#{attached.epoch}",
            # A new epoch is a new stream: what it holds starts where the server says.
            after=after
            if attached.outcome == "new" or not self._epoch_changed(attached)
            else attached.replay_from - 1,
            terms=terms,
        )

    def _epoch_changed(self, attached: Attached) -> bool:
        return any(w.code == "epoch_changed" for w in attached.warnings)

    async def disconnect(self, how: Literal["close", "reset"]) -> None:
        if how == "close":
            self._closing_ourselves = True
            try:
                await self.client.close()
            finally:
                self._closing_ourselves = False
            return
        ws = self.client.ws
        if ws is not None:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self._drop()

    async def _drop(self) -> None:
        self._closing_ourselves = True
        try:
            await self.client.drop()
        finally:
            self._closing_ourselves = False

    async def aclose(self) -> None:
        await self._drop()

    # --- requests ------------------------------------------------------------------------

    async def send_message(self, text: str) -> str:
        try:
            message_id = await self.client.send_user_message(text)
        except LocalProtocolError as exc:  # no session to send in (never connected, or closed)
            raise DriverError(f"send: {exc}") from None
        sent = next((r for r in self.client.protocol.unacked.values() if r.id == message_id), None)
        if isinstance(sent, UserMessage):
            self._sent[message_id] = sent
        return message_id

    async def resend(self, message_id: str, *, renumber: bool, timeout: float) -> None:
        """§6: the same request again, under its own seq (a resend the server must only ack)
        or under a new seq (a renumbered resend it must answer with `duplicate`); then a
        context request as a barrier: the server answers in order (§6), so once it is
        answered, whatever the resend got has arrived."""
        request = self._sent.get(message_id)
        if request is None:
            raise DriverError(f"resend: {message_id} was not sent by this client")
        ws = self.client.ws
        if ws is None or not self.client.connected:
            raise DriverError("resend: not connected")
        try:
            if renumber:
                await self.client.send_user_message(request.text, message_id)
            else:
                await ws.send(codec.encode(request), text=True)
            await self.client.agent_context(timeout)
        except (TimeoutError, ConnectionLostError, LocalProtocolError, ConnectionClosed) as exc:
            raise DriverError(f"resend: {type(exc).__name__}: {exc}") from None

    async def await_reply(self, message_id: str, timeout: float) -> int:
        try:
            reply = await self.client.reply_to(message_id, timeout)
        except (TimeoutError, ConnectionLostError) as exc:
            raise DriverError(f"no complete reply to {message_id}: {type(exc).__name__}") from None
        return len(reply)

    async def fetch_history(self, timeout: float, *, page_size: int | None = None) -> list[Turn]:
        """Every stored turn, oldest first, fetched page by page (§11.2: `before` walks back)."""
        turns: list[Turn] = []
        before: int | None = None
        limit = page_size or HISTORY_PAGE
        try:
            while True:
                page: ConversationHistory = await self.client.history(before, limit, timeout)
                turns[:0] = [
                    Turn(index=e.index, role=e.role, message_id=e.message_id, text=e.text)
                    for e in page.entries
                ]
                if page.next_before is None:
                    return turns
                before = page.next_before
        except (TimeoutError, ConnectionLostError, LocalProtocolError) as exc:
            raise DriverError(f"history: {type(exc).__name__}: {exc}") from None

    async def fetch_context(self, timeout: float) -> Mapping[str, Any]:
        try:
            answer: AgentContext = await self.client.agent_context(timeout)
        except (TimeoutError, ConnectionLostError, LocalProtocolError) as exc:
            raise DriverError(f"context: {type(exc).__name__}: {exc}") from None
        context: dict[str, Any] = msgspec.to_builtins(answer.context)
        return context

    async def send_raw(
        self, frame: str | bytes, timeout: float, *, until_close: bool = False
    ) -> RawAnswer:
        """Send a frame as is on the current connection; report the answer and any close.

        The wait ends at the first error answered, or with ``until_close`` only when the
        connection closes (an error is sent before the close that follows it).
        """
        ws = self.client.ws
        if ws is None:
            raise DriverError("send: not connected")
        seen = len(self.client.events)
        with contextlib.suppress(Exception):
            await ws.send(frame)

        def answered() -> bool | None:
            if not self.client.connected:
                return True
            if not until_close and any(
                isinstance(e, UnnumberedError) for e in self.client.events[seen:]
            ):
                return True
            return None

        with contextlib.suppress(TimeoutError):
            await self.client.wait_for(answered, timeout, "an answer to the raw frame")
        errors = [e for e in self.client.events[seen:] if isinstance(e, UnnumberedError)]
        code = errors[0].error.code if errors else None
        close = (
            self.client.close_codes[-1]
            if not self.client.connected and self.client.close_codes
            else None
        )
        return RawAnswer(error=code, close=close)


def delivered(stream: str, message: ServerSequenced) -> Delivered:
    """The neutral observation of one numbered message of the reference protocol (this
    driver's and the in-memory driver's)."""
    assert message.seq is not None
    if isinstance(message, ReplyChunk):
        return Delivered(
            stream=stream,
            position=message.seq,
            kind="reply",
            reply_to=message.in_reply_to,
            text=message.text,
            final=message.final,
        )
    if isinstance(message, ToolCall):
        return Delivered(
            stream=stream,
            position=message.seq,
            kind="tool_call",
            reply_to=message.in_reply_to,
            text=message.call.result,
        )
    tag = message.__struct_config__.tag
    return Delivered(
        stream=stream,
        position=message.seq,
        kind=tag if isinstance(tag, str) else "message",
        reply_to=getattr(message, "in_reply_to", None),
    )


class ReferenceClock:
    """The reference server's virtual clock, driven over its admin channel (§4.4)."""

    def __init__(self, url: str, admin_token: str) -> None:
        self.url, self._admin_token = url, admin_token

    async def advance(self, seconds: float) -> None:
        await admin.advance_clock(self.url, self._admin_token, seconds)


class EmbeddedReference:
    """The embedded reference server, one child process per scenario."""

    planted_faults = PLANTED_FAULTS
    """Its catalogue of faults to plant (``harness matrix``)."""

    @staticmethod
    def describe_fault(name: str) -> str:
        """What a planted fault breaks, in words (the matrix's record and pages show it)."""
        return describe_fault(name)

    def capabilities(self, *, virtual_clock: bool) -> frozenset[str]:
        return EmbeddedTarget.capabilities_for(virtual_clock=virtual_clock)

    def target(self, scenario: Scenario, *, virtual_clock: bool) -> Target:
        if scenario.nodes > 1:  # several nodes on one Redis (docs/cluster.md)
            return ClusterTarget(
                nodes=scenario.nodes,
                virtual_clock=virtual_clock,
                plant_fault=scenario.plant_fault,
                server_args=scenario.server_args,
            )
        return EmbeddedTarget(
            virtual_clock=virtual_clock,
            plant_fault=scenario.plant_fault,
            server_args=scenario.server_args,
        )


class ReferenceFactory:
    """The entry point of the ``reference`` driver (``ws_continuity.drivers``)."""

    info = INFO
    embedded: EmbeddedTargets = EmbeddedReference()
    clock_control = ReferenceClock
    """An external reference server's clock, when the user gives its admin token."""

    def __call__(self, config: ClientConfig, observe: Observe) -> Driver:
        # Returned as a `Driver`: mypy checks here that ReferenceDriver meets the contract.
        return ReferenceDriver(config, observe)


factory: DriverFactory = ReferenceFactory()
