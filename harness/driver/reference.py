"""The driver for the reference protocol (docs/protocol.md), over ``AsyncClient``.

It is the only module of the harness that knows the reference protocol's messages; it turns
them into the neutral ``Outcome``, ``Delivery`` and ``Turn`` records and writes every
operation into the run's history.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from websockets.exceptions import InvalidHandshake

from harness.driver.base import Anomalies, Delivery, DriverError, Outcome, Terms, Turn
from harness.history import History
from reference_server.aio_client import AsyncClient, ConnectionLostError, HandshakeRefusedError
from reference_server.protocol import (
    Attached,
    ClientProtocol,
    ClientState,
    Delivered,
    DuplicateDelivery,
    RejectedByServer,
    SequenceGap,
    ServerClosing,
    UnnumberedError,
)
from reference_server.protocol.messages import (
    AgentContext,
    ConversationHistory,
    ReplyChunk,
    SecurityNotice,
    ServerSequenced,
    ToolCall,
)

HISTORY_PAGE = 200
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header else None
    except ValueError:
        return None


class ReferenceDriver:
    """One client of a server that speaks the reference protocol."""

    def __init__(
        self, name: str, url: str, token: str, history: History, *, seed: int | None = None
    ) -> None:
        self.name = name
        self.history = history
        self.client = AsyncClient(url, token, on_gap="report")
        self.terms: Terms | None = None
        self.anomalies = Anomalies()
        self._seen_events = 0
        self._session_start = 0
        self._errors_seen = 0
        self.tokens_seen: list[str] = []
        self.random = random.Random(seed)

    # --- what was seen -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.client.connected

    @property
    def deliveries(self) -> list[Delivery]:
        """What the current session delivered (a fresh session starts a new stream)."""
        self._collect()
        events = self.client.events[self._session_start :]
        return [_delivery(e.message) for e in events if isinstance(e, Delivered)]

    @property
    def security_notices(self) -> list[dict[str, str]]:
        return [
            {
                "previous": e.message.previous_ip,
                "current": e.message.current_ip,
                "policy": e.message.policy,
            }
            for e in self.client.events[self._session_start :]
            if isinstance(e, Delivered) and isinstance(e.message, SecurityNotice)
        ]

    def _collect(self) -> None:
        """Turn protocol-level anomalies into neutral ones (once each)."""
        events = self.client.events[self._seen_events :]
        self._seen_events = len(self.client.events)
        for event in events:
            if isinstance(event, DuplicateDelivery):
                self.anomalies.duplicates.append(event.seq)
                self.history.event(self.name, "duplicate_delivery", position=event.seq)
            elif isinstance(event, SequenceGap):
                self.anomalies.gaps.append((event.expected, event.received - 1))
                self.history.event(
                    self.name, "undeclared_gap", first=event.expected, last=event.received - 1
                )
            elif isinstance(event, Delivered):
                self.history.event(self.name, "deliver", position=event.message.seq)
        for error in self.client.errors[self._errors_seen :]:
            self.anomalies.protocol_errors.append(f"{error.error_code}: {error.message}")
        self._errors_seen = len(self.client.errors)

    # --- sessions ------------------------------------------------------------------------

    def set_route(
        self,
        *,
        connect_to: tuple[str, int] | None,
        source_ip: str | None,
        forwarded_for: str | None,
    ) -> None:
        """How the next connection goes: the TCP address to open (a proxy in front of the
        URL's host, or None for the host itself), the source address, X-Forwarded-For."""
        self.client.connect_to = connect_to
        self.client.source_ip = source_ip
        if forwarded_for:
            self.client.headers["X-Forwarded-For"] = forwarded_for
        else:
            self.client.headers.pop("X-Forwarded-For", None)

    def set_token(self, token: str) -> None:
        """Use a new credential from the next connection on."""
        self.client.token = token

    async def connect(self, timeout: float, *, retry: bool = True) -> Outcome:
        self._collect()
        self._session_start = len(self.client.events)
        self.anomalies = Anomalies()
        return await self._open("connect", self.client.connect, timeout, retry)

    async def resume(
        self,
        timeout: float,
        *,
        retry: bool = True,
        token: Literal["current", "previous"] = "current",
        session_of: ReferenceDriver | None = None,
    ) -> Outcome:
        """Resume this client's session; or present the token it held before its last resume
        (a replayed stolen token); or take over ``session_of``'s session."""
        if self.client.connected:  # a half-open connection the client gives up on
            await self.client.drop()
        protocol = self.client.protocol
        if session_of is not None:
            other = session_of.client.protocol
            if other.session is None:
                raise DriverError(f"{session_of.name} has no session to take over")
            protocol.session, protocol.last_seq = other.session, other.last_seq
            protocol.state = ClientState.DISCONNECTED
            self._session_start = len(self.client.events)
        if token == "previous":
            return await self._replay_previous_token(timeout)
        return await self._open("resume", self.client.resume, timeout, retry)

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
            return await self._open("resume", self.client.resume, timeout, False)
        finally:
            await self.client.drop()
            self.client.protocol = own

    async def _open(self, kind: str, how: Any, timeout: float, retry: bool) -> Outcome:
        """Connect or resume; while ``retry``, back off exponentially with full jitter (§14)
        after a refused connection or an ``overloaded`` answer, until ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                outcome, retry_after = await self._attempt(kind, how, deadline - time.monotonic())
            except DriverError as exc:
                delay = self._backoff(attempt, exc.retry_after)
                if not retry or time.monotonic() + delay >= deadline:
                    raise
                self.history.event(self.name, "retry", of=kind, attempt=attempt, delay=delay)
                await asyncio.sleep(delay)
                continue
            if outcome.reason != "overloaded" or not retry:
                return outcome
            delay = self._backoff(attempt, retry_after)
            if time.monotonic() + delay >= deadline:
                return outcome
            self.history.event(self.name, "retry", of=kind, attempt=attempt, delay=delay)
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, floor: float | None) -> float:
        cap = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
        return max(floor or 0.0, self.random.uniform(0, cap))

    async def _attempt(self, kind: str, how: Any, timeout: float) -> tuple[Outcome, float | None]:
        op = self.history.invoke(self.name, kind)
        try:
            answer = await how(max(0.05, timeout))
        except HandshakeRefusedError as exc:
            self.history.complete(op, "fail", error=str(exc))
            error = DriverError(f"{kind}: handshake refused: {exc}")
            error.retry_after = _seconds(exc.retry_after)
            raise error from None
        except (OSError, TimeoutError, ConnectionLostError, InvalidHandshake) as exc:
            # InvalidHandshake: the network broke the HTTP upgrade (no or a cut response).
            self.history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
            raise DriverError(f"{kind}: {type(exc).__name__}: {exc}") from None
        self._collect()
        if isinstance(answer, RejectedByServer):
            self.history.complete(op, "ok", outcome="rejected", reason=answer.reason)
            after = answer.retry_after_ms / 1000 if answer.retry_after_ms else None
            return Outcome(kind="rejected", reason=answer.reason), after
        outcome = _outcome(answer)
        session = self.client.protocol.session
        if session is not None:
            self.tokens_seen.append(session.resume_token)
            self.terms = Terms(
                full_window_s=session.windows.full_s,
                resumable_window_s=session.windows.resumable_s,
                ip_policy=session.ip_policy,
                capabilities=frozenset(session.capabilities),
            )
        self.history.complete(
            op, "ok", outcome=outcome.kind, warnings=list(outcome.warnings), gap_s=outcome.gap_s
        )
        return outcome, None

    @property
    def closed_reason(self) -> str | None:
        """The reason the server gave when it last closed this client's connection."""
        closings = [e for e in self.client.events if isinstance(e, ServerClosing)]
        return closings[-1].closing.reason if closings else None

    async def disconnect(self, how: Literal["close", "reset"]) -> None:
        """Close cleanly, or reset the TCP connection (RST) as a broken network would."""
        self.history.event(self.name, "disconnect", how=how)
        if how == "close":
            await self.client.close()
            return
        ws = self.client.ws
        if ws is not None:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.client.drop()

    # --- requests ------------------------------------------------------------------------

    async def send_message(self, text: str) -> str:
        op = self.history.invoke(self.name, "send", text=text)
        message_id = await self.client.send_user_message(text)
        # Sent or queued for the resume: the outcome is known only when the reply comes.
        self.history.complete(op, "info", message_id=message_id, connected=self.connected)
        return message_id

    async def await_reply(self, message_id: str, timeout: float) -> list[Delivery]:
        op = self.history.invoke(self.name, "chat", message_id=message_id)
        try:
            reply = await self.client.reply_to(message_id, timeout)
        except (TimeoutError, ConnectionLostError) as exc:
            self._collect()
            self.history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
            raise DriverError(f"no complete reply to {message_id}: {type(exc).__name__}") from None
        self._collect()
        self.history.complete(op, "ok", parts=len(reply))
        return [_delivery(m) for m in reply]

    async def fetch_history(self, timeout: float) -> list[Turn]:
        """Every stored turn, oldest first, fetched page by page."""
        op = self.history.invoke(self.name, "history")
        turns: list[Turn] = []
        before: int | None = None
        try:
            while True:
                page: ConversationHistory = await self.client.history(before, HISTORY_PAGE, timeout)
                turns[:0] = [Turn(e.index, e.role, e.message_id, e.text) for e in page.entries]
                if page.next_before is None:
                    break
                before = page.next_before
        except (TimeoutError, ConnectionLostError) as exc:
            self.history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
            raise DriverError(f"history: {type(exc).__name__}") from None
        self._collect()
        self.history.complete(op, "ok", turns=len(turns))
        return turns

    async def fetch_context(self, timeout: float) -> Mapping[str, Any]:
        op = self.history.invoke(self.name, "context")
        try:
            answer: AgentContext = await self.client.agent_context(timeout)
        except (TimeoutError, ConnectionLostError) as exc:
            self.history.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
            raise DriverError(f"context: {type(exc).__name__}") from None
        self._collect()
        self.history.complete(op, "ok")
        context: dict[str, Any] = msgspec.to_builtins(answer.context)
        return context

    async def send_raw(
        self, frame: str | bytes, timeout: float, *, until_close: bool = False
    ) -> tuple[str | None, int | None]:
        """Send a frame as is on the current connection; report the answer and any close.

        The wait ends at the first error answered, or with ``until_close`` only when the
        connection closes (an error is sent before the close that follows it).
        """
        ws = self.client.ws
        if ws is None:
            raise DriverError("send: not connected")
        seen = len(self.client.events)
        self.history.event(self.name, "send_raw", size=len(frame), binary=isinstance(frame, bytes))
        with contextlib.suppress(Exception):
            await ws.send(frame)

        def answered() -> bool | None:
            if until_close:
                return True if not self.client.connected else None
            if any(isinstance(e, UnnumberedError) for e in self.client.events[seen:]):
                return True
            return True if not self.client.connected else None

        with contextlib.suppress(TimeoutError):
            await self.client.wait_for(answered, timeout, "an answer to the raw frame")
        await asyncio.sleep(0)
        errors = [e for e in self.client.events[seen:] if isinstance(e, UnnumberedError)]
        code = errors[0].error.code if errors else None
        close = (
            self.client.close_codes[-1]
            if not self.client.connected and self.client.close_codes
            else None
        )
        return code, close


def _outcome(attached: Attached) -> Outcome:
    missed = (attached.missed.first, attached.missed.last) if attached.missed else None
    return Outcome(
        kind=attached.outcome,
        warnings=tuple(w.code for w in attached.warnings),
        gap_s=attached.gap_s,
        replayed=attached.replay_count,
        missed=missed,
    )


def _delivery(message: ServerSequenced) -> Delivery:
    assert message.seq is not None
    if isinstance(message, ReplyChunk):
        return Delivery(message.seq, "reply", message.in_reply_to, message.text, message.final)
    if isinstance(message, ToolCall):
        return Delivery(message.seq, "tool_call", message.in_reply_to, message.call.result)
    reply_to = getattr(message, "in_reply_to", None)
    return Delivery(message.seq, message.__struct_config__.tag or "message", reply_to)  # type: ignore[arg-type]
