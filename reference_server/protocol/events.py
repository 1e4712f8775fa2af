"""What the state machines tell their callers (docs/protocol.md §3).

The sans-I/O objects return these from ``receive()`` and the like; the asyncio layers react
to them (send frames, close connections, run the agent). Frozen and slotted, as in h11.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import CloseCode
from .messages import (
    ClientRequest,
    Closing,
    Error,
    Rejected,
    ResumeWarning,
    SeqRange,
    ServerSequenced,
)

# --- client side --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attached:
    """The client holds a session on this connection: a new one, or a resumed one."""

    outcome: Literal["new", "full", "degraded"]
    session_id: str
    epoch: str
    replay_from: int
    replay_count: int
    missed: SeqRange | None
    warnings: tuple[ResumeWarning, ...]
    gap_s: float
    resent: int
    """How many of the client's own requests it sends again because the server lacked them."""


@dataclass(frozen=True, slots=True)
class RejectedByServer:
    """The server refused the hello or resume; ``final`` means the session is gone."""

    reason: str
    message: str
    retry_after_ms: int | None
    final: bool


@dataclass(frozen=True, slots=True)
class Delivered:
    """The next server message in sequence, delivered exactly once."""

    message: ServerSequenced


@dataclass(frozen=True, slots=True)
class DuplicateDelivery:
    """The server sent a ``seq`` the client already had; it was dropped, not delivered."""

    seq: int


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """The server skipped sequence numbers without declaring them missed (a server bug)."""

    expected: int
    received: int


@dataclass(frozen=True, slots=True)
class ServerClosing:
    """The server announced it will close this connection; ``final`` means no resume."""

    closing: Closing
    final: bool


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """The server has processed every client request up to ``seq``."""

    seq: int


@dataclass(frozen=True, slots=True)
class UnnumberedError:
    """An unnumbered error from the server about this connection."""

    error: Error


ClientEvent = (
    Attached
    | RejectedByServer
    | Delivered
    | DuplicateDelivery
    | SequenceGap
    | ServerClosing
    | Acknowledged
    | UnnumberedError
)

# --- server side --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A client request to process, seen for the first time."""

    request: ClientRequest


@dataclass(frozen=True, slots=True)
class DuplicateRequest:
    """A request id already processed; a ``duplicate`` answer was queued instead (§6)."""

    request: ClientRequest


@dataclass(frozen=True, slots=True)
class ByeReceived:
    """The client ended the session; its state must be deleted."""


@dataclass(frozen=True, slots=True)
class HeartbeatTimedOut:
    """The attached connection was silent past the heartbeat timeout; close it (4007)."""


@dataclass(frozen=True, slots=True)
class SessionExpired:
    """The resumable window passed; the session's state must be deleted."""


SessionEvent = RequestReceived | DuplicateRequest | ByeReceived | HeartbeatTimedOut | SessionExpired


@dataclass(frozen=True, slots=True)
class ResumeAccepted:
    """The resume succeeded; the session's outbox now belongs to the new connection."""

    outcome: Literal["full", "degraded"]
    gap_s: float
    replayed: int
    missed: SeqRange | None
    ip_changed: bool
    taken_over: Closing | None
    """When the session was attached elsewhere: what to send that connection before closing it."""


@dataclass(frozen=True, slots=True)
class ResumeRefused:
    """The resume failed: send ``rejected`` on the new connection, then close it."""

    rejected: Rejected
    close_code: CloseCode
    revoked: bool
    close_current: Closing | None
    """When a revoked session was attached: what to send that connection before closing it."""


ResumeResult = ResumeAccepted | ResumeRefused
