"""Close codes, error codes and the two kinds of protocol error (docs/protocol.md §13).

As in h11, errors are split by who broke the rules: ``LocalProtocolError`` means this side's
code misused the state machine (a bug in the caller); ``RemoteProtocolError`` means the peer
sent something the protocol forbids, and carries the close code to answer it with.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """WebSocket close codes the protocol uses (§13.1).

    4000-4999 are for private use (RFC 6455 §7.4.2).
    """

    NORMAL = 1000
    UNSUPPORTED_DATA = 1003  # a binary frame where text is expected (RFC 6455 §7.4.1)
    POLICY_VIOLATION = 1008  # flood: too many frames too fast
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # overloaded; a retry_after_ms hint precedes it
    PROTOCOL_ERROR = 4000
    SESSION_TAKEN_OVER = 4001
    UNSUPPORTED_VERSION = 4002
    AUTH_FAILED = 4003
    SESSION_EXPIRED = 4004
    SESSION_REVOKED = 4005
    IP_DENIED = 4006
    HEARTBEAT_TIMEOUT = 4007
    SESSION_CLOSED = 4008
    REJECTED = 4009  # any other rejected hello or resume; the rejected message says why


class ErrorCode:
    """``code`` values of the error message (§13.2)."""

    MALFORMED_JSON = "malformed_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    FRAME_TOO_LARGE = "frame_too_large"
    BINARY_FRAME = "binary_frame"
    UNEXPECTED_MESSAGE = "unexpected_message"
    SEQUENCE_GAP = "sequence_gap"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    INTERNAL = "internal"
    HISTORY_RANGE = "history_range"  # §13.2: deprecated in 1.1, never sent; clients accept it


# §13.1: the close code that follows each rejection reason.
REJECTION_CLOSE_CODES: dict[str, CloseCode] = {
    "unsupported_version": CloseCode.UNSUPPORTED_VERSION,
    "auth_failed": CloseCode.AUTH_FAILED,
    "reauth_required": CloseCode.AUTH_FAILED,
    "session_expired": CloseCode.SESSION_EXPIRED,
    "session_unknown": CloseCode.SESSION_EXPIRED,
    "session_revoked": CloseCode.SESSION_REVOKED,
    "token_reused": CloseCode.SESSION_REVOKED,
    "token_invalid": CloseCode.REJECTED,
    "session_closed": CloseCode.SESSION_CLOSED,
    "ip_denied": CloseCode.IP_DENIED,
    "invalid_resume": CloseCode.PROTOCOL_ERROR,
    "overloaded": CloseCode.TRY_AGAIN_LATER,
}


class ProtocolError(Exception):
    """Base of every protocol error."""


class LocalProtocolError(ProtocolError):
    """This side asked its state machine for something the current state does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; answer with ``error_code`` and close with ``close_code``."""

    def __init__(
        self,
        error_code: str,
        message: str,
        *,
        close_code: CloseCode = CloseCode.PROTOCOL_ERROR,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.close_code = close_code
        self.path = path

    def __repr__(self) -> str:
        return f"RemoteProtocolError({self.error_code!r}, {self.message!r})"
