"""Centrifugo's bidirectional JSON protocol: typed frames in, command frames out. No I/O.

What the ``centrifugo`` driver speaks (Centrifugo 6, ``github.com/centrifugal/protocol``
``client.proto``; JSON form, one command per text frame):

- a client command is ``{"id": N, "<method>": {...}}``; the reply carries the same ``id`` and
  either ``"<method>": {...}`` or ``"error": {"code", "message", "temporary"}``;
- a frame from the server may hold several JSON objects separated by ``\\n``;
- ``{}`` alone is the server's ping; when the connect reply said ``"pong": true`` the client
  answers ``{}``, or the server closes the connection (3012) once ``pong_timeout`` passes;
- an asynchronous message has no ``id`` and a ``push`` with the ``channel`` and one of
  ``pub`` (a publication), ``disconnect``, ``unsubscribe``, ...

Every object is decoded once, here, into the structs below (msgspec); nothing downstream
reads a raw dict of the wire.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ClientInfo",
    "ConnectResult",
    "DisconnectPush",
    "Error",
    "HistoryResult",
    "Publication",
    "Push",
    "Reply",
    "SubscribeResult",
    "command",
    "decode_frame",
    "encode",
    "is_ping",
    "reason_name",
]


class _Wire(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every frame part; fields the driver does not use are ignored on decode."""


class Error(_Wire, frozen=True, kw_only=True):
    """An error reply to a command (``client.proto`` ``Error``)."""

    code: int
    message: str = ""
    temporary: bool = False


class ClientInfo(_Wire, frozen=True, kw_only=True):
    user: str = ""
    client: str = ""


class Publication(_Wire, frozen=True, kw_only=True):
    """A message published into a channel, at its ``offset`` in the channel's stream.

    ``offset`` is 0 (absent on the wire) when the channel keeps no history; ``epoch`` rides
    only on some publications (the first push of a connection, history replies)."""

    data: Any = None
    offset: int = 0
    epoch: str = ""
    info: ClientInfo | None = None


class ConnectResult(_Wire, frozen=True, kw_only=True):
    client: str = ""
    version: str = ""
    ping: int = 0
    """Seconds between the server's pings (0: it sends none)."""
    pong: bool = False
    """Whether the server expects an answer to each ping."""
    expires: bool = False
    ttl: int = 0


class SubscribeResult(_Wire, frozen=True, kw_only=True):
    """A subscribe reply. On a successful recovery ``recovered`` is true, ``publications`` are
    the missed ones and ``offset`` repeats the one the client sent; on a failed one
    ``recovered`` is absent, there are no publications and ``offset`` is the stream top."""

    recoverable: bool = False
    positioned: bool = False
    epoch: str = ""
    offset: int = 0
    recovered: bool = False
    was_recovering: bool = False
    publications: tuple[Publication, ...] = ()


class HistoryResult(_Wire, frozen=True, kw_only=True):
    publications: tuple[Publication, ...] = ()
    epoch: str = ""
    offset: int = 0


class DisconnectPush(_Wire, frozen=True, kw_only=True):
    code: int = 0
    reason: str = ""


class Push(_Wire, frozen=True, kw_only=True):
    channel: str = ""
    pub: Publication | None = None
    disconnect: DisconnectPush | None = None


class Reply(_Wire, frozen=True, kw_only=True):
    """One JSON object from the server: a reply (``id`` > 0), a push, or a ping (all empty)."""

    id: int = 0
    error: Error | None = None
    connect: ConnectResult | None = None
    subscribe: SubscribeResult | None = None
    publish: dict[str, Any] | None = None
    history: HistoryResult | None = None
    push: Push | None = None


_decoder = msgspec.json.Decoder(Reply)
_encoder = msgspec.json.Encoder()


def decode_frame(frame: str | bytes) -> list[Reply]:
    """Every object of one server frame, in order (``msgspec.DecodeError`` if one is bad)."""
    text = frame.decode() if isinstance(frame, bytes) else frame
    return [_decoder.decode(line) for line in text.split("\n") if line.strip()]


def is_ping(reply: Reply) -> bool:
    """Whether the object was ``{}``: the server's ping."""
    return reply == _EMPTY


_EMPTY = Reply()


def command(request_id: int, method: str, params: dict[str, Any]) -> str:
    """A command frame: ``{"id": request_id, method: params}``."""
    return encode({"id": request_id, method: params})


def encode(value: Any) -> str:
    return _encoder.encode(value).decode()


def reason_name(message: str) -> str:
    """An error message or close reason as one token: ``permission denied`` ->
    ``permission_denied`` (the names scenario files compare)."""
    return "_".join(message.strip().lower().split()) or "unknown"
