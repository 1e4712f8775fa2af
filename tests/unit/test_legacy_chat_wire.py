"""The example plugin's codec (legacy_chat_driver.wire): frames in, typed messages out, with no
event loop."""

from __future__ import annotations

import json

import pytest

from tests.legacy_chat_plugin import legacy_chat_driver, wire


def test_each_server_message_decodes_to_its_type() -> None:
    """Every message the example server sends has its typed form; extra fields are ignored."""
    frames = {
        '{"type": "connection_established", "user_id": "alice"}': wire.ConnectionEstablished(
            user_id="alice"
        ),
        '{"type": "agent_chunk", "message_id": "c:1", "content": "Here "}': wire.AgentChunk(
            message_id="c:1", content="Here "
        ),
        '{"type": "agent_response", "message_id": "c:1", "content": "x", "at": 1}': (
            wire.AgentResponse(message_id="c:1", content="x")
        ),
        '{"type": "conversation_history", "messages": '
        '[{"role": "user", "content": "hi", "message_id": "c:1"}]}': wire.ConversationHistory(
            messages=(wire.HistoryEntry(role="user", content="hi", message_id="c:1"),)
        ),
        '{"type": "agent_context", "context": {"memory": {"name": "Ada"}}}': wire.AgentContext(
            context={"memory": {"name": "Ada"}}
        ),
        '{"type": "error", "error": "malformed_json"}': wire.ErrorMessage(error="malformed_json"),
    }
    for frame, expected in frames.items():
        assert expected == wire.decode(frame)


def test_an_unknown_type_is_kept_and_not_an_error() -> None:
    """A newer server's message type is an Unknown with its type, not a protocol violation."""
    assert wire.Unknown(type="typing_indicator") == wire.decode('{"type": "typing_indicator"}')
    assert "typing_indicator" == wire.type_of(wire.decode('{"type": "typing_indicator"}'))


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not an object with a string `type`"),
        ('{"type": 3}', "not an object with a string `type`"),
        ('{"type": "agent_chunk", "content": "x"}', "'agent_chunk' message with wrong fields"),
        (b'{"type": "error", "error": "x"}', "a binary frame"),
    ],
)
def test_what_is_no_message_of_the_protocol_is_a_peer_error(frame: str | bytes, says: str) -> None:
    """Malformed frames raise PeerProtocolError saying what was wrong."""
    with pytest.raises(wire.PeerProtocolError, match=says):
        wire.decode(frame)


def test_client_messages_encode_as_the_server_reads_them() -> None:
    """The client's frames are JSON objects with their type and fields."""
    sent = wire.encode(wire.UserMessage(message_id="c:1", content="hello"))
    assert {"type": "user_message", "message_id": "c:1", "content": "hello"} == json.loads(sent)
    assert '{"type":"get_conversation_history"}' == wire.encode(wire.GetConversationHistory())
    assert "get_agent_context" == wire.type_of(wire.GetAgentContext())


def test_the_token_goes_in_the_query_string_quoted() -> None:
    """The protocol's only credential is `?token=`, added to whatever query the URL has."""
    with_token = legacy_chat_driver.driver.with_token
    assert "ws://h:1/ws?token=a%2Bb.c%26d" == with_token("ws://h:1/ws", "a+b.c&d")
    assert "ws://h:1/ws?x=1&token=t" == with_token("ws://h:1/ws?x=1", "t")
