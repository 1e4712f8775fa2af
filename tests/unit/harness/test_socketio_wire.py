"""The Engine.IO / Socket.IO packet codec of the socketio driver, on frames as the server sends."""

from __future__ import annotations

import pytest

from harness.driver import socketio_wire as wire
from harness.driver.socketio import engine_url


def test_open_packet_gives_the_heartbeat_in_seconds() -> None:
    """Engine.IO's open packet carries the sid and the heartbeat settings in milliseconds."""
    frame = '0{"sid":"abc","upgrades":[],"pingInterval":1000,"pingTimeout":2000,"maxPayload":100}'
    assert wire.Open(
        sid="abc", ping_interval_s=1.0, ping_timeout_s=2.0, max_payload=100
    ) == wire.decode(frame)


@pytest.mark.parametrize(
    ("frame", "packet"),
    [
        ("2", wire.Ping()),
        ("3", wire.Pong()),
        ("1", wire.EngineClose()),
        ("6", wire.Noop()),
        ('40{"sid":"s1","pid":"p1"}', wire.Connected(sid="s1", pid="p1")),
        ('40{"sid":"s1"}', wire.Connected(sid="s1", pid=None)),
        ('44{"message":"auth_failed"}', wire.ConnectError(message="auth_failed")),
        ("41", wire.Disconnected()),
        ('4312[{"a":1}]', wire.Ack(ack_id=12, args=({"a": 1},))),
    ],
)
def test_each_packet_type_decodes(frame: str, packet: wire.Packet) -> None:
    """Every packet type the driver handles decodes to its typed packet."""
    assert packet == wire.decode(frame)


def test_an_event_with_recovery_on_carries_its_offset_last() -> None:
    """The server appends the stored event's offset as the last element of the array."""
    event = wire.decode('42["reply",{"in_reply_to":"m1","final":true},"Q8pJhCm"]')
    assert (
        wire.Event(
            name="reply",
            args=({"in_reply_to": "m1", "final": True},),
            ack_id=None,
            offset="Q8pJhCm",
        )
        == event
    )


def test_without_offsets_a_trailing_string_is_an_argument() -> None:
    """A server with recovery off appends nothing: the last string is the event's own."""
    event = wire.decode('42["note","hello"]', offsets=False)
    assert wire.Event(name="note", args=("hello",), ack_id=None, offset=None) == event


@pytest.mark.parametrize(
    "frame",
    ["", "9", "4", "42{not json", "42[1,2]", '40"x"', '45-["x",{"_placeholder":true}]', b"\x04"],
)
def test_frames_that_are_not_packets_we_know_are_the_peers_error(frame: str | bytes) -> None:
    """Malformed, unknown and binary frames raise PeerProtocolError, never anything else."""
    with pytest.raises(wire.PeerProtocolError):
        wire.decode(frame)


def test_encoders_write_what_the_protocol_says() -> None:
    """CONNECT with auth, an event, an event asking for an ack, a leave and a pong."""
    assert '40{"token":"t","pid":"p","offset":"o"}' == wire.encode_connect(
        {"token": "t", "pid": "p", "offset": "o"}
    )
    assert '42["chat",{"id":"c:1","text":"hé"}]' == wire.encode_event(
        "chat", {"id": "c:1", "text": "hé"}
    )
    assert '427["context"]' == wire.encode_ack_request(7, "context")
    assert ("41", "3") == (wire.encode_leave(), wire.encode_pong())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:9/socket.io/", "ws://127.0.0.1:9/socket.io/?EIO=4&transport=websocket"),
        ("ws://h:9", "ws://h:9/socket.io/?EIO=4&transport=websocket"),
        ("wss://h/rt/?x=1", "wss://h/rt/?x=1&EIO=4&transport=websocket"),
    ],
)
def test_engine_url_adds_the_engine_io_query(url: str, expected: str) -> None:
    """The driver connects to Engine.IO 4's WebSocket transport at the target's path."""
    assert expected == engine_url(url)
