"""The legacy chat protocol's messages, typed, and its one codec (no I/O: text in, messages out).

Every frame is a JSON object with a ``type`` (examples/legacy_chat/server.py). Nothing in a
message numbers it: there is no sequence number, no acknowledgement and no resume token, so a
client cannot tell a lost message, a doubled one or a reordered one from what it receives.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import msgspec

__all__ = [
    "AgentChunk",
    "AgentContext",
    "AgentResponse",
    "ClientMessage",
    "ConnectionEstablished",
    "ConversationHistory",
    "ErrorMessage",
    "GetAgentContext",
    "GetConversationHistory",
    "HistoryEntry",
    "PeerProtocolError",
    "ServerMessage",
    "Unknown",
    "UserMessage",
    "decode",
    "encode",
    "type_of",
]


class _Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every message; ``type`` is the tag."""


# --- client to server ---------------------------------------------------------------------------


class UserMessage(_Message, tag="user_message", frozen=True, kw_only=True):
    message_id: str
    """Chosen by the client; the server echoes it on the reply's parts."""
    content: str


class GetConversationHistory(_Message, tag="get_conversation_history", frozen=True, kw_only=True):
    pass


class GetAgentContext(_Message, tag="get_agent_context", frozen=True, kw_only=True):
    pass


ClientMessage: TypeAlias = UserMessage | GetConversationHistory | GetAgentContext


# --- server to client ---------------------------------------------------------------------------


class ConnectionEstablished(_Message, tag="connection_established", frozen=True, kw_only=True):
    user_id: str


class AgentChunk(_Message, tag="agent_chunk", frozen=True, kw_only=True):
    """A part of a reply that is still streaming."""

    message_id: str
    content: str


class AgentResponse(_Message, tag="agent_response", frozen=True, kw_only=True):
    """The last part of a reply (the whole reply, when it is not streamed)."""

    message_id: str
    content: str


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    role: str
    content: str
    message_id: str
    """The user message's id; an assistant turn carries the id of the message it answers."""


class ConversationHistory(_Message, tag="conversation_history", frozen=True, kw_only=True):
    messages: tuple[HistoryEntry, ...]


class AgentContext(_Message, tag="agent_context", frozen=True, kw_only=True):
    context: dict[str, Any]


class ErrorMessage(_Message, tag="error", frozen=True, kw_only=True):
    error: str
    message: str = ""


ServerMessage: TypeAlias = (
    ConnectionEstablished
    | AgentChunk
    | AgentResponse
    | ConversationHistory
    | AgentContext
    | ErrorMessage
)


class Unknown(msgspec.Struct, frozen=True, kw_only=True):
    """A message of a type this driver does not know (a newer server): kept, not an error."""

    type: str


class _Head(msgspec.Struct, frozen=True):
    type: str


_KNOWN: Final = frozenset(
    str(cls.__struct_config__.tag)
    for cls in (
        ConnectionEstablished,
        AgentChunk,
        AgentResponse,
        ConversationHistory,
        AgentContext,
        ErrorMessage,
    )
)


_DECODER: Final = msgspec.json.Decoder(ServerMessage)


class PeerProtocolError(Exception):
    """The server sent a frame that is no message of the protocol."""


def decode(frame: str | bytes) -> ServerMessage | Unknown:
    """The message a server frame holds; ``PeerProtocolError`` if it holds none."""
    if isinstance(frame, bytes):
        raise PeerProtocolError("a binary frame: the protocol's frames are JSON text")
    try:
        message: ServerMessage = _DECODER.decode(frame)
    except msgspec.ValidationError as exc:
        problem = str(exc)
    except msgspec.DecodeError as exc:
        raise PeerProtocolError(f"not JSON: {exc}") from None
    else:
        return message
    try:
        head = msgspec.json.decode(frame, type=_Head)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise PeerProtocolError(f"not an object with a string `type`: {problem}") from None
    if head.type in _KNOWN:
        raise PeerProtocolError(f"a {head.type!r} message with wrong fields: {problem}")
    return Unknown(type=head.type)


def encode(message: ClientMessage) -> str:
    """The text frame of a client message."""
    return msgspec.json.encode(message).decode()


def type_of(message: ServerMessage | ClientMessage | Unknown) -> str:
    """The ``type`` a message is sent with."""
    if isinstance(message, Unknown):
        return message.type
    return str(message.__struct_config__.tag)
