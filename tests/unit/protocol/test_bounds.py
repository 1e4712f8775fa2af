"""What revision 1.1 bounds: integers, version lists, request ids, close codes (§1, §4)."""

from __future__ import annotations

import pytest

from reference_server.protocol import ErrorCode, RemoteProtocolError, codec, negotiate_version
from reference_server.protocol.messages import MAX_INTEGER, MAX_REQUEST_ID

TOO_BIG = MAX_INTEGER + 1


def _fails(frame: str, *, server: bool = False) -> tuple[str, str | None]:
    with pytest.raises(RemoteProtocolError) as caught:
        (codec.decode_server if server else codec.decode_client)(frame)
    return caught.value.error_code, caught.value.path


@pytest.mark.parametrize(
    ("frame", "path"),
    [
        ('{"type":"hello","versions":[]}', "$.versions"),
        ('{"type":"hello","versions":[0]}', "$.versions[0]"),
        ('{"type":"hello","versions":[1,-2]}', "$.versions[1]"),
        ('{"type":"hello","versions":[' + ",".join(["1"] * 17) + "]}", "$.versions"),
        (f'{{"type":"ack","seq":{TOO_BIG}}}', "$.seq"),
        (f'{{"type":"ping","nonce":{TOO_BIG}}}', "$.nonce"),
        ('{"type":"user_message","id":"","seq":1,"text":"t"}', "$.id"),
        ('{"type":"get_agent_context","id":"' + "x" * (MAX_REQUEST_ID + 1) + '","seq":1}', "$.id"),
        ('{"type":"get_conversation_history","id":"h","seq":1,"limit":501}', "$.limit"),
        ('{"type":"get_conversation_history","id":"h","seq":1,"before":-1}', "$.before"),
    ],
)
def test_out_of_bounds_client_fields_are_invalid_messages(frame: str, path: str) -> None:
    """§4.2 rule 5: each bound of revision 1.1 fails with invalid_message naming the field."""
    assert (ErrorCode.INVALID_MESSAGE, path) == _fails(frame)


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"hello","versions":[1,1,2]}',
        '{"type":"hello","versions":[' + ",".join(["1"] * 16) + "]}",
        f'{{"type":"ack","seq":{MAX_INTEGER}}}',
        '{"type":"user_message","id":"' + "é" * MAX_REQUEST_ID + '","seq":1,"text":"t"}',
        '{"type":"get_conversation_history","id":"h","seq":1,"before":0,"limit":0}',
    ],
)
def test_values_at_the_bounds_are_accepted(frame: str) -> None:
    """The largest integer, a repeated version, 128 characters of any kind, zero paging."""
    codec.decode_client(frame)


@pytest.mark.parametrize(
    ("frame", "path"),
    [
        ('{"type":"closing","code":999,"reason":"r","message":"m"}', "$.code"),
        ('{"type":"closing","code":5000,"reason":"r","message":"m"}', "$.code"),
        (
            '{"type":"reply_chunk","seq":1,"in_reply_to":"u","chunk_index":-1,"text":"","final":true}',
            "$.chunk_index",
        ),
        ('{"type":"error","code":"x","message":"m","retry_after_ms":-1}', "$.retry_after_ms"),
        (
            '{"type":"conversation_history","seq":1,"in_reply_to":"h","entries":[],"total":0,'
            '"next_before":0,"retrieval_ms":0}',
            "$.next_before",
        ),
    ],
)
def test_out_of_bounds_server_fields_are_invalid_messages(frame: str, path: str) -> None:
    """A client holds the server to the same bounds."""
    assert (ErrorCode.INVALID_MESSAGE, path) == _fails(frame, server=True)


def test_open_enumerations_take_values_this_revision_does_not_name() -> None:
    """§4.2: closing.reason, error.code and warning codes are open: any string decodes."""
    codec.decode_server('{"type":"closing","code":4001,"reason":"moved_to_mars","message":""}')
    codec.decode_server('{"type":"error","code":"quota_exceeded","message":""}')


@pytest.mark.parametrize(
    ("versions", "expected"), [((1,), 1), ((2, 1), 2), ((1, 1, 2, 2), 2), ((3, 4), None)]
)
def test_negotiation_takes_the_highest_common_version(
    versions: tuple[int, ...], expected: int | None
) -> None:
    """§4.1: duplicates and order do not matter; no common version is None."""
    assert expected == negotiate_version(versions)


@pytest.mark.parametrize("version", [1, 2])
def test_version_2_advertises_what_version_1_cannot_carry(version: int) -> None:
    """§4.1: a version-1 welcome and resumed are exactly version 1's (no new member); version
    2 adds the rate limit, the request-id bound and the re-authentication age."""
    from reference_server.protocol import ServerSession, SessionConfig
    from reference_server.protocol.messages import Hello, Resume

    config = SessionConfig(frames_per_s=50.0, frame_burst=70, request_ids_kept=9)
    session = ServerSession(
        session_id="s", user_id="u", epoch="e", client_ip="ip", now=0.0, config=config
    )
    session.welcome(Hello(versions=(version,)))
    (welcome,) = session.data_to_send()
    session.connection_lost(1.0)
    token = codec.decode_server(welcome).resume_token  # type: ignore[union-attr]
    resume = Resume(versions=(version,), session_id="s", resume_token=token, epoch="e", last_seq=0)
    session.resume(resume, now=2.0, user_id="u", client_ip="ip")
    (resumed,) = session.data_to_send()
    for frame in (welcome, resumed):
        new_members = [b'"frames_per_s"', b'"frame_burst"', b'"request_ids_kept"', b'"reauth_']
        assert (version == 2) == all(member in frame for member in new_members)
        assert (version == 1) == (not any(member in frame for member in new_members))
        decoded = codec.decode_server(frame)
        limits = decoded.limits  # type: ignore[union-attr]
        expected = (50.0, 70, 9, 60.0) if version == 2 else (None, None, None, None)
        assert expected == (
            limits.frames_per_s,
            limits.frame_burst,
            limits.request_ids_kept,
            decoded.reauth_max_age_s,  # type: ignore[union-attr]
        )
