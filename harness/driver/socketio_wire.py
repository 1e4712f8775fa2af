"""Engine.IO 4 and Socket.IO 5 packets as text frames, sans-I/O: decode a frame, encode one.

Only what the ``socketio`` driver needs, over the WebSocket transport (no polling, no binary
attachments). References are to the protocols' own specifications:
github.com/socketio/engine.io-protocol (v4) and github.com/socketio/socket.io-protocol (v5).

- Engine.IO packet: one type digit, then its data (``0`` open, ``1`` close, ``2`` ping,
  ``3`` pong, ``4`` message, ``6`` noop).
- Socket.IO packet, inside an Engine.IO message: a type digit (``0`` CONNECT, ``1``
  DISCONNECT, ``2`` EVENT, ``3`` ACK, ``4`` CONNECT_ERROR, ``5``/``6`` binary), an optional
  namespace ending in ``,`` (absent for ``/``), an optional ack id, then JSON.
- With connection state recovery on, the server appends each stored event's offset as the last
  element of its data array (socket.io 4.6+, "how it works"); the client presents its session
  id (``pid``) and the last offset it processed in the CONNECT payload to recover.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = [
    "Ack",
    "ConnectError",
    "Connected",
    "Disconnected",
    "EngineClose",
    "Event",
    "Noop",
    "Open",
    "Packet",
    "PeerProtocolError",
    "Ping",
    "Pong",
    "decode",
    "encode_ack_request",
    "encode_connect",
    "encode_event",
    "encode_leave",
    "encode_pong",
]


class PeerProtocolError(ValueError):
    """The server sent a frame that is not an Engine.IO / Socket.IO packet we know."""


@dataclass(frozen=True, slots=True)
class Open:
    """Engine.IO ``0``: the handshake, with the server's heartbeat settings."""

    sid: str
    ping_interval_s: float
    ping_timeout_s: float
    max_payload: int


@dataclass(frozen=True, slots=True)
class EngineClose:
    """Engine.IO ``1``: the transport is closing."""


@dataclass(frozen=True, slots=True)
class Ping:
    """Engine.IO ``2``: the server's heartbeat (v4: the server pings, the client pongs)."""


@dataclass(frozen=True, slots=True)
class Pong:
    """Engine.IO ``3``."""


@dataclass(frozen=True, slots=True)
class Noop:
    """Engine.IO ``6``."""


@dataclass(frozen=True, slots=True)
class Connected:
    """Socket.IO CONNECT from the server: the namespace is joined. ``pid`` is the private
    session id of connection state recovery (absent when the server has it off)."""

    sid: str
    pid: str | None


@dataclass(frozen=True, slots=True)
class ConnectError:
    """Socket.IO CONNECT_ERROR: a middleware refused the connection."""

    message: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Disconnected:
    """Socket.IO DISCONNECT from the server: it ended the socket (not recoverable)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Socket.IO EVENT: a name, its arguments, the ack id the server asks for, and the offset
    the server appended (the last argument when it is a string and recovery is on)."""

    name: str
    args: tuple[Any, ...]
    ack_id: int | None
    offset: str | None


@dataclass(frozen=True, slots=True)
class Ack:
    """Socket.IO ACK: the answer to an event the client sent with an ack id."""

    ack_id: int
    args: tuple[Any, ...]


Packet: TypeAlias = (
    Open | EngineClose | Ping | Pong | Noop | Connected | ConnectError | Disconnected | Event | Ack
)


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise PeerProtocolError(f"{what}: not JSON: {text[:80]!r}") from None


def decode(frame: str | bytes, *, offsets: bool = True) -> Packet:
    """One text frame to one packet. ``offsets``: whether the server appends offsets to its
    events (a recovery-enabled server does; the driver learns it from the CONNECT's pid)."""
    if isinstance(frame, bytes):
        raise PeerProtocolError("binary frame: binary attachments are not supported")
    if not frame:
        raise PeerProtocolError("empty frame")
    kind, rest = frame[0], frame[1:]
    if kind == "0":
        body = _json(rest, "open")
        try:
            return Open(
                sid=str(body["sid"]),
                ping_interval_s=float(body["pingInterval"]) / 1000,
                ping_timeout_s=float(body["pingTimeout"]) / 1000,
                max_payload=int(body.get("maxPayload", 0)),
            )
        except (KeyError, TypeError, ValueError):
            raise PeerProtocolError(f"open: missing fields: {rest[:120]!r}") from None
    if kind == "1":
        return EngineClose()
    if kind == "2":
        return Ping()
    if kind == "3":
        return Pong()
    if kind == "6":
        return Noop()
    if kind == "4":
        return _socket_packet(rest, offsets=offsets)
    raise PeerProtocolError(f"unknown Engine.IO packet type {kind!r}")


def _socket_packet(text: str, *, offsets: bool) -> Packet:
    if not text:
        raise PeerProtocolError("empty Socket.IO packet")
    kind, rest = text[0], text[1:]
    if rest.startswith("/"):  # a namespace other than "/" (the driver only joins "/")
        nsp, _, rest = rest.partition(",")
        if nsp != "/":
            raise PeerProtocolError(f"packet for namespace {nsp!r}")
    digits = len(rest) - len(rest.lstrip("0123456789"))
    ack_id = int(rest[:digits]) if digits else None
    data = _json(rest[digits:], "packet data") if rest[digits:] else None
    if kind == "0":
        if not isinstance(data, dict) or "sid" not in data:
            raise PeerProtocolError(f"CONNECT without sid: {text[:120]!r}")
        pid = data.get("pid")
        return Connected(sid=str(data["sid"]), pid=pid if isinstance(pid, str) else None)
    if kind == "1":
        return Disconnected()
    if kind == "4":
        if isinstance(data, dict):
            return ConnectError(message=str(data.get("message", "")), data=data.get("data"))
        return ConnectError(message=str(data))
    if kind == "2":
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise PeerProtocolError(f"EVENT without a name: {text[:120]!r}")
        args = tuple(data[1:])
        offset = None
        if offsets and args and isinstance(args[-1], str):
            offset, args = args[-1], args[:-1]
        return Event(name=data[0], args=args, ack_id=ack_id, offset=offset)
    if kind == "3":
        if ack_id is None or not isinstance(data, list):
            raise PeerProtocolError(f"ACK without id or data: {text[:120]!r}")
        return Ack(ack_id=ack_id, args=tuple(data))
    if kind in "56":
        raise PeerProtocolError("binary event: binary attachments are not supported")
    raise PeerProtocolError(f"unknown Socket.IO packet type {kind!r}")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode_connect(auth: dict[str, Any]) -> str:
    """CONNECT to ``/`` with the auth payload (token, and pid + offset to recover)."""
    return "40" + _dumps(auth)


def encode_event(name: str, *args: Any) -> str:
    """EVENT with no ack asked for."""
    return "42" + _dumps([name, *args])


def encode_ack_request(ack_id: int, name: str, *args: Any) -> str:
    """EVENT that asks the server to answer with ACK ``ack_id``."""
    return f"42{ack_id}" + _dumps([name, *args])


def encode_leave() -> str:
    """DISCONNECT: the client leaves the namespace (Socket.IO then keeps no session)."""
    return "41"


def encode_pong() -> str:
    return "3"
