"""The codec: one way in and out, typed errors naming the field (docs/protocol.md §4, §12)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_server.protocol import CloseCode, ErrorCode, RemoteProtocolError, codec
from reference_server.protocol.messages import (
    MAX_INTEGER,
    Ack,
    AgentContext,
    AgentContextData,
    ReplyChunk,
    ToolCallRecord,
    UserMessage,
    WorkflowState,
)


def test_round_trip_keeps_every_field() -> None:
    """A message decodes to an equal message after encoding."""
    message = AgentContext(
        seq=7,
        in_reply_to="c3",
        retrieval_ms=1.5,
        context=AgentContextData(
            memory={"name": "Ada"},
            preferences={"tone": "brief"},
            variables={"x": 2},
            workflow=WorkflowState(name="onboarding", step=2, completed=("greet", "collect")),
            tool_calls=(ToolCallRecord(call_id="t1", tool="add", arguments={"a": 1}, result="3"),),
        ),
    )
    assert message == codec.decode_server(codec.encode(message))


def test_encoding_is_compact_json_with_the_type_tag() -> None:
    """The wire form is one JSON object whose type field names the message."""
    assert b'{"type":"ack","seq":3}' == codec.encode(Ack(seq=3))


@pytest.mark.parametrize(
    ("frame", "code", "path"),
    [
        (b"{", ErrorCode.MALFORMED_JSON, None),
        (b"[1]", ErrorCode.MALFORMED_JSON, None),
        (b"\xff", ErrorCode.MALFORMED_JSON, None),
        (b'{"type":"teleport"}', ErrorCode.UNKNOWN_TYPE, "$.type"),
        (b'{"seq":1}', ErrorCode.UNKNOWN_TYPE, "$.type"),
        (b'{"type":"welcome"}', ErrorCode.UNKNOWN_TYPE, "$.type"),
        (b'{"type":"ack"}', ErrorCode.INVALID_MESSAGE, "$.seq"),
        (b'{"type":"ack","seq":"1"}', ErrorCode.INVALID_MESSAGE, "$.seq"),
        (b'{"type":"ack","seq":1,"extra":0}', ErrorCode.INVALID_MESSAGE, "$.extra"),
    ],
)
def test_bad_client_frames_get_typed_errors_with_the_field(
    frame: bytes, code: str, path: str | None
) -> None:
    """Each kind of bad frame maps to its error code and, where there is one, the field."""
    with pytest.raises(RemoteProtocolError) as caught:
        codec.decode_client(frame)
    assert (code, path) == (caught.value.error_code, caught.value.path)


def test_oversize_frame_is_refused_before_parsing() -> None:
    """A frame over the limit is refused with close code 1009."""
    with pytest.raises(RemoteProtocolError) as caught:
        codec.decode_client(b'{"type":"ack","seq":1}', max_bytes=5)
    assert (ErrorCode.FRAME_TOO_LARGE, CloseCode.MESSAGE_TOO_BIG) == (
        caught.value.error_code,
        caught.value.close_code,
    )


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_never_escape_as_anything_but_a_protocol_error(frame: bytes) -> None:
    """Garbage decodes to a message or raises RemoteProtocolError, nothing else."""
    with contextlib.suppress(RemoteProtocolError):
        codec.decode_client(frame)


@settings(max_examples=200)
@given(seq=st.integers(min_value=1, max_value=MAX_INTEGER), text=st.text(), final=st.booleans())
def test_any_reply_chunk_round_trips(seq: int, text: str, final: bool) -> None:
    """Any text, including surrogates' neighbours and control characters, survives the codec."""
    message = ReplyChunk(seq=seq, in_reply_to="u1", chunk_index=0, text=text, final=final)
    assert message == codec.decode_server(codec.encode(message))


def test_client_and_server_unions_are_separate() -> None:
    """A server-only message sent by a client is an unknown type, and the reverse."""
    frame = codec.encode(UserMessage(id="u1", seq=1, text="hi"))
    with pytest.raises(RemoteProtocolError):
        codec.decode_server(frame)
