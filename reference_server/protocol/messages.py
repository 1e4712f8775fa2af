"""Every message of the reconnection protocol, as frozen typed structs (docs/protocol.md §4).

A frame is one JSON object in one WebSocket text frame; its ``type`` field names the message.
Messages that a side numbers carry ``seq``: the server numbers everything it sends that must
survive a drop (§5), the client numbers its requests (§6). Control messages (hello, resume,
welcome, resumed, rejected, ack, ping, pong, bye, closing) are never numbered and never replayed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# §1: every integer is within 0 .. 2^53-1, the integers a JSON number holds exactly.
MAX_INTEGER = 2**53 - 1
# §5: sequence numbers start at 1; 0 means "nothing yet" where a count is acknowledged.
Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_INTEGER)]
SeqOrZero = Annotated[int, msgspec.Meta(ge=0, le=MAX_INTEGER)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INTEGER)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=MAX_INTEGER)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
# §4.1: a version list names 1 to 16 versions, each a positive integer.
Versions = Annotated[tuple[Positive, ...], msgspec.Meta(min_length=1, max_length=16)]
# §6: a client message id is 1 to 128 characters.
MAX_REQUEST_ID = 128
RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REQUEST_ID)]
# §13.1: a close code as RFC 6455 §7.4 allows a sender to use.
CloseCodeValue = Annotated[int, msgspec.Meta(ge=1000, le=4999)]

MAX_HISTORY_PAGE = 500

# §4.1: wire versions. 1 is what revision 1.0 of docs/protocol.md specified; 2 (revision 1.1)
# adds the advertisements in welcome and resumed that version 1 cannot carry.
PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS: tuple[int, ...] = (1, 2)

# §4.6: a resume outcome that is not a rejection.
ResumeOutcome = Literal["full", "degraded"]
# §10: the server's policy for a resume from another client address.
IpPolicy = Literal["allow", "require_reauth", "deny"]
# §4.5: why a hello or a resume was refused.
RejectReason = Literal[
    "unsupported_version",
    "auth_failed",
    "reauth_required",
    "session_unknown",
    "session_expired",
    "session_revoked",
    "session_closed",
    "token_invalid",
    "token_reused",
    "ip_denied",
    "invalid_resume",
    "overloaded",
]
# §4.5: reasons after which the same session may be tried again (after a delay or with a new
# credential); every other reason means the session is gone for this client.
RETRYABLE_REJECTIONS: frozenset[str] = frozenset({"overloaded", "reauth_required"})


class _Message(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True
):
    """Base of every message: tagged by ``type``; unknown fields are a protocol error (§4)."""


# --- shared value types -------------------------------------------------------------------


class Windows(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Disconnection windows, in seconds after the drop (§8)."""

    full_s: Seconds
    resumable_s: Seconds


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How often the server pings, and how long silence may last before it closes (§9)."""

    interval_s: PositiveSeconds
    timeout_s: PositiveSeconds


class Limits(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Bounds the server enforces (§12). The optional fields exist from version 2 on: absent
    (None) they are not encoded at all, so a version-1 peer sees the version-1 object."""

    max_frame_bytes: Annotated[int, msgspec.Meta(ge=256, le=MAX_INTEGER)]
    replay_buffer_max: Positive
    frames_per_s: PositiveSeconds | None = None
    """§12.1, version 2: the rate limit on counted frames, per second."""
    frame_burst: Positive | None = None
    """§12.1, version 2: how many counted frames may come at once."""
    request_ids_kept: Positive | None = None
    """§6.1, version 2: how many client seqs' request ids the server remembers."""


class SeqRange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An inclusive range of server sequence numbers (``first`` <= ``last``)."""

    first: Seq
    last: Seq


class ResumeWarning(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A reason a resume is ``degraded`` (§8)."""

    code: str
    message: str


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One turn of a conversation as the server stores it."""

    index: Count
    role: Literal["user", "agent"]
    message_id: str
    text: str


class ToolCallRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One tool call the agent made."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    result: str


class WorkflowState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the agent is in its multi-step workflow."""

    name: str
    step: Count
    completed: tuple[str, ...] = ()


class AgentContextData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The agent's state for one session: what must survive a drop."""

    memory: dict[str, str]
    preferences: dict[str, str]
    variables: dict[str, Any]
    workflow: WorkflowState
    tool_calls: tuple[ToolCallRecord, ...] = ()


# --- client to server ---------------------------------------------------------------------


class Hello(_Message, tag="hello", frozen=True):
    """Open a new session (§7.1)."""

    versions: Versions
    client: str = ""


class Resume(_Message, tag="resume", frozen=True):
    """Reattach to a session after a drop (§7.2)."""

    versions: Versions
    session_id: str
    resume_token: str
    epoch: str
    last_seq: SeqOrZero
    """The highest server ``seq`` the client received with nothing missing before it."""


class UserMessage(_Message, tag="user_message", frozen=True):
    """A chat turn for the agent; answered by reply_chunk messages (§11)."""

    id: RequestId
    seq: Seq
    text: str


class GetConversationHistory(_Message, tag="get_conversation_history", frozen=True):
    """Ask for stored turns, newest first in pages: entries with index < ``before`` (§11)."""

    id: RequestId
    seq: Seq
    before: Count | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=MAX_HISTORY_PAGE)] = 50


class GetAgentContext(_Message, tag="get_agent_context", frozen=True):
    """Ask for the agent's stored context (§11)."""

    id: RequestId
    seq: Seq


class Ack(_Message, tag="ack", frozen=True):
    """Cumulative acknowledgement: every message of the peer's stream up to ``seq`` arrived (§5)."""

    seq: SeqOrZero


class Ping(_Message, tag="ping", frozen=True):
    """Liveness probe; the peer answers with a pong carrying the same nonce (§9)."""

    nonce: Count


class Pong(_Message, tag="pong", frozen=True):
    """Answer to a ping."""

    nonce: Count


class Bye(_Message, tag="bye", frozen=True):
    """The client ends its session for good; the server forgets it (§7.4)."""

    reason: str = ""


# --- server to client ---------------------------------------------------------------------


class Welcome(_Message, tag="welcome", frozen=True, omit_defaults=True):
    """A new session is open (§7.1)."""

    protocol_version: Positive
    session_id: str
    resume_token: str
    epoch: str
    windows: Windows
    heartbeat: Heartbeat
    limits: Limits
    ip_policy: IpPolicy
    capabilities: tuple[str, ...]
    client_ip: str
    reauth_max_age_s: Seconds | None = None
    """§10, version 2: how recently a credential must be issued to count as re-authentication."""


class Resumed(_Message, tag="resumed", frozen=True, omit_defaults=True):
    """A resume was accepted (§7.2); replayed messages follow it in order."""

    protocol_version: Positive
    outcome: ResumeOutcome
    session_id: str
    resume_token: str
    epoch: str
    replay_from: Seq
    """The next server ``seq`` the client will receive; replay starts here."""
    replay_count: Count
    last_client_seq: SeqOrZero
    """The highest client ``seq`` the server processed; the client resends what follows."""
    missed: SeqRange | None
    warnings: tuple[ResumeWarning, ...]
    gap_s: Seconds
    windows: Windows
    heartbeat: Heartbeat
    limits: Limits
    ip_policy: IpPolicy
    capabilities: tuple[str, ...]
    client_ip: str
    reauth_max_age_s: Seconds | None = None
    """§10, version 2: as in welcome."""


class Rejected(_Message, tag="rejected", frozen=True):
    """A hello or resume was refused; the server closes the connection after it (§4.5)."""

    reason: RejectReason
    message: str
    retry_after_ms: Count | None = None


class Closing(_Message, tag="closing", frozen=True):
    """The server is about to close this connection, and why (§7.3, §13)."""

    code: CloseCodeValue
    reason: str
    """An open enumeration (§4.2): informational, clients decide on ``code``."""
    message: str


class ReplyChunk(_Message, tag="reply_chunk", frozen=True):
    """One piece of the agent's streamed reply to a user message."""

    seq: Seq
    in_reply_to: str
    chunk_index: Count
    text: str
    final: bool


class ToolCall(_Message, tag="tool_call", frozen=True):
    """The agent called a tool while answering ``in_reply_to``."""

    seq: Seq
    in_reply_to: str
    call: ToolCallRecord


class ConversationHistory(_Message, tag="conversation_history", frozen=True):
    """A page of stored turns, oldest first; ``next_before`` fetches the page before it."""

    seq: Seq
    in_reply_to: str
    entries: tuple[HistoryEntry, ...]
    total: Count
    next_before: Positive | None
    retrieval_ms: Seconds


class AgentContext(_Message, tag="agent_context", frozen=True):
    """The agent's stored context."""

    seq: Seq
    in_reply_to: str
    context: AgentContextData
    retrieval_ms: Seconds


class SecurityNotice(_Message, tag="security_notice", frozen=True):
    """The session was resumed from another client address (§10)."""

    seq: Seq
    code: Literal["ip_changed"]
    previous_ip: str
    current_ip: str
    policy: IpPolicy


class Duplicate(_Message, tag="duplicate", frozen=True):
    """A client message id that was already processed; it was not processed again (§6)."""

    seq: Seq
    in_reply_to: str


class Error(_Message, tag="error", frozen=True):
    """A request failed; numbered when it answers a numbered request (§13)."""

    code: str
    message: str
    seq: Seq | None = None
    in_reply_to: str | None = None
    retry_after_ms: Count | None = None


ClientMessage = (
    Hello
    | Resume
    | UserMessage
    | GetConversationHistory
    | GetAgentContext
    | Ack
    | Ping
    | Pong
    | Bye
)
ServerMessage = (
    Welcome
    | Resumed
    | Rejected
    | Closing
    | Ack
    | Ping
    | Pong
    | ReplyChunk
    | ToolCall
    | ConversationHistory
    | AgentContext
    | SecurityNotice
    | Duplicate
    | Error
)
# Messages each side numbers and the peer must receive exactly once, in order.
ClientRequest = UserMessage | GetConversationHistory | GetAgentContext
ServerSequenced = (
    ReplyChunk | ToolCall | ConversationHistory | AgentContext | SecurityNotice | Duplicate | Error
)
