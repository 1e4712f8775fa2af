"""The client side of the protocol, sans-I/O (docs/protocol.md §3.1, §5-§7).

``ClientProtocol`` keeps what a client must remember across connections: the session, the
resume token, the highest server seq received, and its own requests the server has not
acknowledged. The I/O layer feeds it frames with ``receive()``, tells it about a lost
connection, and sends what ``data_to_send()`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from . import codec
from .errors import CloseCode, ErrorCode, LocalProtocolError, RemoteProtocolError
from .events import (
    Acknowledged,
    Attached,
    ClientEvent,
    Delivered,
    DuplicateDelivery,
    RejectedByServer,
    SequenceGap,
    ServerClosing,
    UnnumberedError,
)
from .messages import (
    RETRYABLE_REJECTIONS,
    SUPPORTED_VERSIONS,
    Ack,
    Bye,
    ClientRequest,
    Closing,
    Error,
    GetAgentContext,
    GetConversationHistory,
    Heartbeat,
    Hello,
    IpPolicy,
    Limits,
    Ping,
    Pong,
    Rejected,
    Resume,
    Resumed,
    ServerMessage,
    ServerSequenced,
    UserMessage,
    Welcome,
    Windows,
)
from .transitions import CLIENT_TRANSITIONS, ClientInput, ClientState, transition

# §13.1: closing codes after which the session cannot be resumed.
FINAL_CLOSE_CODES = frozenset(
    {CloseCode.SESSION_REVOKED, CloseCode.SESSION_EXPIRED, CloseCode.SESSION_CLOSED}
)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the server told the client about its session in welcome or resumed."""

    session_id: str
    epoch: str
    resume_token: str
    protocol_version: int
    windows: Windows
    heartbeat: Heartbeat
    limits: Limits
    ip_policy: IpPolicy
    capabilities: tuple[str, ...]
    client_ip: str
    reauth_max_age_s: float | None = None
    """§10: advertised from version 2 on; None from a version-1 server."""


class ClientProtocol:
    """One client's protocol state, across any number of connections."""

    def __init__(
        self,
        *,
        versions: tuple[int, ...] = SUPPORTED_VERSIONS,
        client_name: str = "",
        on_gap: Literal["raise", "report"] = "raise",
    ) -> None:
        """``on_gap="report"`` turns a server's undeclared sequence gap into a ``SequenceGap``
        event instead of an error, so a test harness can record it and go on."""
        self.versions = versions
        self.client_name = client_name
        self.on_gap = on_gap
        self.state = ClientState.IDLE
        self.session: SessionInfo | None = None
        self.last_seq = 0
        """The highest server seq received with nothing missing before it (§5)."""
        self.next_seq = 1
        self.unacked: dict[int, ClientRequest] = {}
        """This client's requests the server has not acknowledged, by seq (§6)."""
        self._outbox: list[bytes] = []
        self._ack_pending = False

    # --- opening and resuming ------------------------------------------------------------

    def hello(self) -> None:
        """Ask for a new session (§7.1). Requests of an earlier session are abandoned."""
        self.state = transition(CLIENT_TRANSITIONS, self.state, ClientInput.SEND_HELLO)
        self.session = None
        self.last_seq = 0
        self.next_seq = 1
        self.unacked.clear()
        self._outbox = [codec.encode(Hello(versions=self.versions, client=self.client_name))]

    def resume(self) -> None:
        """Ask to reattach to the current session (§7.2)."""
        if self.session is None:
            raise LocalProtocolError("no session to resume")
        self.state = transition(CLIENT_TRANSITIONS, self.state, ClientInput.SEND_RESUME)
        self._outbox = [
            codec.encode(
                Resume(
                    versions=self.versions,
                    session_id=self.session.session_id,
                    resume_token=self.session.resume_token,
                    epoch=self.session.epoch,
                    last_seq=self.last_seq,
                )
            )
        ]

    def bye(self) -> None:
        """End the session for good (§7.4)."""
        self.state = transition(CLIENT_TRANSITIONS, self.state, ClientInput.SEND_BYE)
        self._outbox.append(codec.encode(Bye()))

    def connection_lost(self) -> None:
        """The connection is gone; frames not yet sent are dropped (requests stay unacked)."""
        self.state = transition(CLIENT_TRANSITIONS, self.state, ClientInput.CONNECTION_LOST)
        self._outbox = []
        self._ack_pending = False

    # --- requests ------------------------------------------------------------------------

    def send_user_message(self, text: str, message_id: str | None = None) -> UserMessage:
        """Queue a chat turn; while disconnected it waits for the resume (§6)."""
        seq = self._take_seq()
        request = UserMessage(id=message_id or f"u{seq}", seq=seq, text=text)
        self._queue_request(request)
        return request

    def request_history(
        self, before: int | None = None, limit: int = 50, message_id: str | None = None
    ) -> GetConversationHistory:
        """Queue a request for a page of conversation history."""
        seq = self._take_seq()
        request = GetConversationHistory(
            id=message_id or f"h{seq}", seq=seq, before=before, limit=limit
        )
        self._queue_request(request)
        return request

    def request_agent_context(self, message_id: str | None = None) -> GetAgentContext:
        """Queue a request for the agent's context."""
        seq = self._take_seq()
        request = GetAgentContext(id=message_id or f"c{seq}", seq=seq)
        self._queue_request(request)
        return request

    def _take_seq(self) -> int:
        if self.state not in _CAN_REQUEST:
            raise LocalProtocolError(f"cannot send a request in state {self.state.value!r}")
        self.next_seq += 1
        return self.next_seq - 1

    def _queue_request(self, request: ClientRequest) -> None:
        self.unacked[request.seq] = request
        if self.state is ClientState.ATTACHED:
            self._outbox.append(codec.encode(request))

    # --- receiving -----------------------------------------------------------------------

    def receive(self, frame: bytes | str) -> list[ClientEvent]:
        """Process one frame from the server; raise ``RemoteProtocolError`` when it breaks §4-§7."""
        if self.state not in _CAN_RECEIVE:
            raise LocalProtocolError(f"no connection in state {self.state.value!r}")
        return self.receive_message(codec.decode_server(frame))

    def receive_message(self, message: ServerMessage) -> list[ClientEvent]:
        """Process one decoded message from the server."""
        # Most frames are numbered answers: one set lookup instead of the match's eight
        # class checks before its last case (bench throughput's client, py-spy), and the next
        # seq on an attached session delivered here, without _on_sequenced's two calls.
        if type(message) in _ALWAYS_NUMBERED:
            seq = message.seq  # type: ignore[union-attr]
            if self.state is ClientState.ATTACHED and seq == self.last_seq + 1:
                self.last_seq = seq
                self._ack_pending = True
                return [Delivered(message)]  # type: ignore[arg-type]
            return self._on_sequenced(message)  # type: ignore[arg-type]
        if type(message) is Ack:  # the next most common: before the match's four class tests
            return self._on_ack(message.seq)
        match message:
            case Welcome():
                return [self._on_welcome(message)]
            case Resumed():
                return self._on_resumed(message)
            case Rejected():
                return [self._on_rejected(message)]
            case Closing():
                return [self._on_closing(message)]
            case Ack(seq=seq):
                return self._on_ack(seq)
            case Ping(nonce=nonce):
                self._outbox.append(codec.encode(Pong(nonce=nonce)))
                return []
            case Pong():
                return []
            case Error(seq=None):
                return [UnnumberedError(message)]
            case _:
                return self._on_sequenced(message)

    def _on_welcome(self, welcome: Welcome) -> Attached:
        self._require(ClientState.CONNECTING, welcome)
        self.state = transition(CLIENT_TRANSITIONS, self.state, ClientInput.RECV_WELCOME)
        self.session = _session_info(welcome)
        return Attached(
            outcome="new",
            session_id=welcome.session_id,
            epoch=welcome.epoch,
            replay_from=1,
            replay_count=0,
            missed=None,
            warnings=(),
            gap_s=0.0,
            resent=0,
        )

    def _on_resumed(self, resumed: Resumed) -> list[ClientEvent]:
        self._require(ClientState.RESUMING, resumed)
        assert self.session is not None  # RESUMING is reached only with a session
        events: list[ClientEvent] = []
        same_epoch = resumed.epoch == self.session.epoch
        if same_epoch:
            declared = resumed.missed.last + 1 if resumed.missed else self.last_seq + 1
            if resumed.replay_from < self.last_seq + 1 or (
                resumed.missed is not None and resumed.missed.first != self.last_seq + 1
            ):
                raise RemoteProtocolError(
                    ErrorCode.INVALID_MESSAGE,
                    f"resumed replay_from={resumed.replay_from}, missed={resumed.missed} "
                    f"does not follow last_seq={self.last_seq}",
                )
            if resumed.replay_from != declared:
                events.append(self._gap(declared, resumed.replay_from))
        self.state = transition(CLIENT_TRANSITIONS, self.state, ClientInput.RECV_RESUMED)
        self.session = _session_info(resumed)
        self.last_seq = resumed.replay_from - 1
        for seq in [s for s in self.unacked if s <= resumed.last_client_seq]:
            del self.unacked[seq]
        # A client that lost its counters (a reloaded page resuming from saved credentials)
        # continues after what the server processed rather than reusing its numbers.
        self.next_seq = max(self.next_seq, resumed.last_client_seq + 1)
        # The first frame on the new connection commits the server's token rotation (§7.2.1).
        self._outbox = [codec.encode(Ack(seq=self.last_seq))]
        self._outbox.extend(codec.encode(request) for request in self.unacked.values())
        events.insert(
            0,
            Attached(
                outcome=resumed.outcome,
                session_id=resumed.session_id,
                epoch=resumed.epoch,
                replay_from=resumed.replay_from,
                replay_count=resumed.replay_count,
                missed=resumed.missed,
                warnings=resumed.warnings,
                gap_s=resumed.gap_s,
                resent=len(self.unacked),
            ),
        )
        return events

    def _on_rejected(self, rejected: Rejected) -> RejectedByServer:
        if self.state not in (ClientState.CONNECTING, ClientState.RESUMING):
            raise RemoteProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE, f"rejected while {self.state.value}"
            )
        final = rejected.reason not in RETRYABLE_REJECTIONS
        move = ClientInput.RECV_REJECTED_FINAL if final else ClientInput.RECV_REJECTED_RETRYABLE
        self.state = transition(CLIENT_TRANSITIONS, self.state, move)
        if final and self.state is ClientState.CLOSED:
            self.unacked.clear()
        return RejectedByServer(
            reason=rejected.reason,
            message=rejected.message,
            retry_after_ms=rejected.retry_after_ms,
            final=final,
        )

    def _on_closing(self, closing: Closing) -> ServerClosing:
        self._require(ClientState.ATTACHED, closing)
        final = closing.code in FINAL_CLOSE_CODES
        move = ClientInput.RECV_CLOSING_FINAL if final else ClientInput.RECV_CLOSING
        self.state = transition(CLIENT_TRANSITIONS, self.state, move)
        self._outbox = []
        self._ack_pending = False
        return ServerClosing(closing=closing, final=final)

    def _on_ack(self, seq: int) -> list[ClientEvent]:
        if seq >= self.next_seq:
            raise RemoteProtocolError(
                ErrorCode.INVALID_MESSAGE, f"ack {seq} for a client seq never sent"
            )
        for acked in [s for s in self.unacked if s <= seq]:
            del self.unacked[acked]
        return [Acknowledged(seq)]

    def _on_sequenced(self, message: ServerSequenced) -> list[ClientEvent]:
        self._require(ClientState.ATTACHED, message)
        assert message.seq is not None  # unnumbered errors are handled before
        if message.seq <= self.last_seq:
            return [DuplicateDelivery(message.seq)]
        events: list[ClientEvent] = []
        if message.seq != self.last_seq + 1:
            events.append(self._gap(self.last_seq + 1, message.seq))
        self.last_seq = message.seq
        self._ack_pending = True
        events.append(Delivered(message))
        return events

    def _gap(self, expected: int, received: int) -> SequenceGap:
        if self.on_gap == "raise":
            raise RemoteProtocolError(
                ErrorCode.SEQUENCE_GAP, f"expected seq {expected}, server sent {received}"
            )
        return SequenceGap(expected=expected, received=received)

    def _require(self, state: ClientState, message: ServerMessage) -> None:
        if self.state is not state:
            raise RemoteProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE,
                f"{type(message).__name__} while {self.state.value}",
            )

    # --- sending -------------------------------------------------------------------------

    @property
    def ack_due(self) -> bool:
        """Has something been delivered since the last ack was queued?"""
        return self._ack_pending

    def has_data_to_send(self, *, include_ack: bool = True) -> bool:
        """Whether ``data_to_send`` (with the same ``include_ack``) would return a frame."""
        return bool(self._outbox) or (include_ack and self._ack_pending)

    def data_to_send(self, *, include_ack: bool = True) -> list[bytes]:
        """Return and forget the frames to send, ending with one cumulative ack if one is due.

        ``include_ack=False`` keeps a due ack for later, so an I/O layer can batch acks (§5).
        """
        if self._ack_pending and include_ack:
            self._outbox.append(codec.encode(Ack(seq=self.last_seq)))
            self._ack_pending = False
        frames, self._outbox = self._outbox, []
        return frames


_ALWAYS_NUMBERED: frozenset[type] = frozenset(get_args(ServerSequenced)) - {Error}
"""Every numbered server message type but ``Error``, which is numbered only with a seq."""
_CAN_REQUEST = frozenset({ClientState.ATTACHED, ClientState.DISCONNECTED, ClientState.RESUMING})
_CAN_RECEIVE = frozenset({ClientState.CONNECTING, ClientState.RESUMING, ClientState.ATTACHED})


def _session_info(message: Welcome | Resumed) -> SessionInfo:
    return SessionInfo(
        session_id=message.session_id,
        epoch=message.epoch,
        resume_token=message.resume_token,
        protocol_version=message.protocol_version,
        windows=message.windows,
        heartbeat=message.heartbeat,
        limits=message.limits,
        ip_policy=message.ip_policy,
        capabilities=message.capabilities,
        client_ip=message.client_ip,
        reauth_max_age_s=message.reauth_max_age_s,
    )
