"""The reconnection protocol, sans-I/O: typed messages, one codec, a state machine per side.

No asyncio, no sockets, no clock reads: time is passed in. The reference server and the
harness client both drive these objects; docs/protocol.md is the normative text.
"""

from . import codec
from .client import ClientProtocol, SessionInfo
from .errors import (
    CloseCode,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from .events import (
    Acknowledged,
    Attached,
    ByeReceived,
    ClientEvent,
    Delivered,
    DuplicateDelivery,
    DuplicateRequest,
    HeartbeatTimedOut,
    RejectedByServer,
    RequestReceived,
    ResumeAccepted,
    ResumeRefused,
    ResumeResult,
    SequenceGap,
    ServerClosing,
    SessionEvent,
    SessionExpired,
    UnnumberedError,
)
from .messages import PROTOCOL_VERSION, SUPPORTED_VERSIONS
from .session import ServerSession, SessionConfig, SessionSnapshot, negotiate_version, rejection
from .transitions import ClientState, SessionState

__all__ = [
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Acknowledged",
    "Attached",
    "ByeReceived",
    "ClientEvent",
    "ClientProtocol",
    "ClientState",
    "CloseCode",
    "Delivered",
    "DuplicateDelivery",
    "DuplicateRequest",
    "ErrorCode",
    "HeartbeatTimedOut",
    "LocalProtocolError",
    "ProtocolError",
    "RejectedByServer",
    "RemoteProtocolError",
    "RequestReceived",
    "ResumeAccepted",
    "ResumeRefused",
    "ResumeResult",
    "SequenceGap",
    "ServerClosing",
    "ServerSession",
    "SessionConfig",
    "SessionEvent",
    "SessionExpired",
    "SessionInfo",
    "SessionSnapshot",
    "SessionState",
    "UnnumberedError",
    "codec",
    "negotiate_version",
    "rejection",
]
