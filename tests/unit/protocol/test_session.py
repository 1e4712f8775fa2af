"""The session rules of docs/protocol.md, one at a time, through an in-memory pair."""

from __future__ import annotations

import pytest

from reference_server.protocol import (
    Attached,
    ClientProtocol,
    ClientState,
    CloseCode,
    DuplicateRequest,
    HeartbeatTimedOut,
    LocalProtocolError,
    RemoteProtocolError,
    ResumeAccepted,
    ResumeRefused,
    SequenceGap,
    ServerSession,
    SessionConfig,
    SessionExpired,
    SessionState,
    codec,
)
from reference_server.protocol.messages import (
    Duplicate,
    Heartbeat,
    Hello,
    Limits,
    Ping,
    Resume,
    SecurityNotice,
    SeqRange,
    UserMessage,
    Windows,
)
from reference_server.protocol.pair import ProtocolPair, counting_tokens


def _pair(**config: object) -> ProtocolPair:
    pair = ProtocolPair(config=SessionConfig(**config), token_factory=counting_tokens())  # type: ignore[arg-type]
    pair.connect()
    pair.settle()
    return pair


def _attached(pair: ProtocolPair) -> list[Attached]:
    return [e for e in pair.client_events if isinstance(e, Attached)]


def _server(pair: ProtocolPair):  # type: ignore[no-untyped-def]
    assert pair.server is not None
    return pair.server


def test_welcome_advertises_windows_heartbeat_policy_and_token() -> None:
    """A hello gets a welcome carrying what a client needs to plan reconnections."""
    pair = _pair(ip_policy="require_reauth")
    session = pair.client.session
    assert session is not None
    assert (30.0, 300.0) == (session.windows.full_s, session.windows.resumable_s)
    assert "require_reauth" == session.ip_policy
    assert "token-1" == session.resume_token
    assert ["new"] == [a.outcome for a in _attached(pair)]


def test_tokens_are_stored_hashed_never_in_clear() -> None:
    """The server keeps only a SHA-256 of the token it issued."""
    pair = _pair()
    server = _server(pair)
    assert "token-1" not in repr(vars(server))


def test_brief_gap_resumes_full_with_replay_in_order() -> None:
    """A resume inside the full window replays every unacked message, in order, once."""
    pair = _pair()
    pair.server_send("a")
    pair.settle()
    pair.drop()
    pair.server_send("b")
    pair.server_send("c")
    pair.advance(15)
    pair.reconnect()
    pair.settle()
    assert ["a", "b", "c"] == [m.text for m in pair.delivered]  # type: ignore[union-attr]
    resumed = _attached(pair)[-1]
    assert ("full", 2, 15.0) == (resumed.outcome, resumed.replay_count, resumed.gap_s)


def test_medium_gap_resumes_degraded_with_warning_and_missed_range() -> None:
    """Past the full window the session is kept but unacked messages are declared missed."""
    pair = _pair()
    pair.server_send("a")
    pair.settle()
    pair.drop()
    pair.server_send("b")
    pair.advance(120)
    pair.reconnect()
    pair.settle()
    resumed = _attached(pair)[-1]
    assert "degraded" == resumed.outcome
    assert ["replay_window_passed"] == [w.code for w in resumed.warnings]
    assert SeqRange(first=2, last=2) == resumed.missed
    assert ["a"] == [m.text for m in pair.delivered]  # type: ignore[union-attr]
    pair.server_send("c")
    pair.settle()
    assert [1, 3] == [m.seq for m in pair.delivered]


def test_long_gap_expires_the_session_and_forgets_it() -> None:
    """Past the resumable window the sweeper expires the session and a resume is rejected."""
    pair = _pair()
    pair.server_send("a")
    pair.drop()
    pair.advance(299)
    assert SessionState.DETACHED == _server(pair).state
    pair.advance(2)
    assert SessionState.EXPIRED == _server(pair).state
    assert any(isinstance(e, SessionExpired) for e in pair.server_events)
    assert () == _server(pair).replay_buffer
    pair.reconnect()
    pair.settle()
    assert ["session_expired"] == [r.reason for r in pair.rejections]
    assert ClientState.CLOSED == pair.client.state
    pair.connect()
    pair.settle()
    assert ["new", "new"] == [a.outcome for a in _attached(pair)]


def test_expiry_is_enforced_at_resume_even_without_a_sweep() -> None:
    """A resume after the resumable window is rejected though no tick ran in between."""
    pair = _pair()
    pair.drop()
    pair.now += 600
    pair.reconnect()
    pair.settle()
    assert ["session_expired"] == [r.reason for r in pair.rejections]


def test_a_session_attached_at_a_crash_is_detached_as_of_the_restore() -> None:
    """§8: restored at t=500 after its last frame at t=100, the session's gap starts at 500."""
    session = ServerSession(session_id="s", user_id="u", epoch="e", client_ip="ip", now=100.0)
    restored = ServerSession.restore(session.snapshot(), replay=(), processed_ids=(), now=500.0)
    assert (SessionState.DETACHED, 500.0, 2.0) == (
        restored.state,
        restored.detached_at,
        restored.gap(502.0),
    )
    session.connection_lost(200.0)  # detached before the crash: its drop time is kept
    restored = ServerSession.restore(session.snapshot(), replay=(), processed_ids=(), now=500.0)
    assert 302.0 == restored.gap(502.0)


def test_next_tick_is_the_next_ping_or_the_heartbeat_deadline_or_the_window_end() -> None:
    """§9: attached, tick is due at the next ping or the deadline, whichever is first; §8:
    detached, at the end of the resumable window; terminal, never."""
    config = SessionConfig(heartbeat=Heartbeat(interval_s=10.0, timeout_s=30.0))
    session = ServerSession(
        session_id="s", user_id="u", epoch="e", client_ip="ip", now=100.0, config=config
    )
    assert 110.0 == session.next_tick_at()  # first ping: interval_s after the attach
    session.tick(110.0)
    assert 120.0 == session.next_tick_at()
    session.tick(120.0)
    session.tick(129.0)
    assert 130.0 == session.next_tick_at()  # the deadline, before the ping due at 130 too
    assert [HeartbeatTimedOut()] == session.tick(130.0)
    session.connection_lost(130.0)
    assert 430.0 == session.next_tick_at()
    session.tick(430.5)
    assert session.next_tick_at() is None


def test_client_requests_sent_while_dropped_are_delivered_after_resume() -> None:
    """Requests made while disconnected wait and are sent once, after the resume."""
    pair = _pair()
    pair.drop()
    pair.client.send_user_message("while away")
    pair.reconnect()
    pair.settle()
    assert ["while away"] == [r.text for r in pair.processed]  # type: ignore[union-attr]
    assert 1 == _attached(pair)[-1].resent


def test_request_lost_in_flight_is_resent_and_processed_once() -> None:
    """A request whose ack was lost is resent on resume and the server skips the copy."""
    pair = _pair()
    pair.client.send_user_message("once")
    pair.flush()
    pair.deliver_to_server()
    pair.to_client.clear()  # the ack is lost with the connection
    pair.drop()
    pair.reconnect()
    pair.settle()
    assert ["once"] == [r.text for r in pair.processed]  # type: ignore[union-attr]
    assert {} == pair.client.unacked


def test_resent_message_id_is_answered_not_processed_twice() -> None:
    """The same client message id under a new seq gets a duplicate notice, not a second run."""
    pair = _pair()
    pair.client.send_user_message("hi", message_id="m-1")
    pair.client.send_user_message("hi", message_id="m-1")
    pair.settle()
    assert 1 == len(pair.processed)
    assert any(isinstance(e, DuplicateRequest) for e in pair.server_events)
    assert any(isinstance(m, Duplicate) and m.in_reply_to == "m-1" for m in pair.delivered)


def test_processed_ids_are_kept_for_the_last_request_ids_kept_client_seqs() -> None:
    """§6.1: with a bound of 3, ids of seqs 1..3 are forgotten by seq 6; an id within the bound
    under a new seq is a duplicate, a forgotten one is processed again as a new request."""
    pair = _pair(request_ids_kept=3)
    for n in range(1, 7):
        pair.client.send_user_message("hi", message_id=f"m{n}")
    pair.settle()
    server = _server(pair)
    assert [("m4", 4), ("m5", 5), ("m6", 6)] == list(server.processed_ids.items())
    assert 4 == server.request_ids_from
    pair.client.send_user_message("again", message_id="m5")  # seq 7: remembered
    pair.client.send_user_message("again", message_id="m1")  # seq 8: forgotten
    pair.settle()
    assert ["m1", "m2", "m3", "m4", "m5", "m6", "m1"] == [r.id for r in pair.processed]
    assert ["m5"] == [m.in_reply_to for m in pair.delivered if isinstance(m, Duplicate)]
    assert ["m6", "m1"] == list(server.processed_ids)  # m5 fell out at seq 8


def test_a_resend_under_its_own_seq_is_never_processed_twice_whatever_the_bound() -> None:
    """§6.1: the bound concerns ids only; a request resent with its seq is acked, not rerun."""
    pair = _pair(request_ids_kept=1)
    pair.client.send_user_message("one", message_id="a")
    pair.client.send_user_message("two", message_id="b")
    pair.flush()
    pair.deliver_to_server()
    pair.to_client.clear()  # the acks are lost with the connection
    pair.drop()
    pair.reconnect()
    pair.settle()
    assert ["a", "b"] == [r.id for r in pair.processed]
    assert {} == pair.client.unacked


def test_restored_processed_ids_keep_their_seqs_and_the_bound() -> None:
    """A restore sorts ids by seq and applies the bound; ids without a seq (an older store)
    count as processed at the last client seq."""
    session = _pair(request_ids_kept=2).server
    assert session is not None
    for seq in (1, 2, 3):
        session.receive(UserMessage(id=f"r{seq}", seq=seq, text="t"), now=0.0)
    restored = ServerSession.restore(
        session.snapshot(),
        replay=(),
        processed_ids=[("r3", 3), ("r1", 1), "legacy", ("r2", 2)],
        now=0.0,
        config=session.config,
    )
    assert [("r2", 2), ("r3", 3), ("legacy", 3)] == list(restored.processed_ids.items())


def test_token_rotates_on_every_resume() -> None:
    """Each resume hands out a new token."""
    pair = _pair()
    for _ in range(3):
        pair.drop()
        pair.reconnect()
        pair.settle()
    assert pair.client.session is not None
    assert "token-4" == pair.client.session.resume_token


def test_old_token_stays_valid_until_the_client_proves_it_got_the_new_one() -> None:
    """A drop right after resumed (before the client's first frame) is not mistaken for theft."""
    pair = _pair()
    pair.drop()
    pair.reconnect()
    pair.deliver_to_server()  # the server accepts and rotates
    pair.drop()  # resumed never reaches the client
    pair.reconnect()  # with the first token again
    pair.settle()
    assert [] == pair.rejections
    assert ["full", "full"] == [
        r.outcome for r in pair.resume_results if isinstance(r, ResumeAccepted)
    ]


def test_unknown_token_is_rejected_without_revoking() -> None:
    """A token that never belonged to the session is refused; the session lives on."""
    pair = _pair()
    pair.drop()
    server = _server(pair)
    resume = Resume(versions=(1,), session_id="s1", resume_token="guess", epoch="e1", last_seq=0)
    result = server.resume(resume, now=pair.now, user_id="user-1", client_ip="127.0.0.1")
    assert isinstance(result, ResumeRefused)
    assert ("token_invalid", False) == (result.rejected.reason, result.revoked)
    assert SessionState.DETACHED == server.state


def test_resume_by_another_user_is_refused() -> None:
    """Auth is checked again on every resume."""
    pair = _pair()
    pair.drop()
    assert pair.client.session is not None
    resume = Resume(
        versions=(1,),
        session_id="s1",
        resume_token=pair.client.session.resume_token,
        epoch="e1",
        last_seq=0,
    )
    result = _server(pair).resume(resume, now=pair.now, user_id="mallory", client_ip="127.0.0.1")
    assert isinstance(result, ResumeRefused)
    assert CloseCode.AUTH_FAILED == result.close_code


def test_second_connection_takes_the_session_over() -> None:
    """A resume while attached moves the session and tells the old connection why."""
    pair = _pair()
    pair.server_send("a")
    pair.drop_client_side()  # half-open: the server still thinks it is attached
    pair.reconnect()
    pair.settle()
    result = pair.resume_results[-1]
    assert isinstance(result, ResumeAccepted)
    assert result.taken_over is not None
    assert CloseCode.SESSION_TAKEN_OVER == result.taken_over.code
    assert ["a"] == [m.text for m in pair.delivered]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("policy", "fresh", "expected"),
    [
        ("allow", False, "accepted"),
        ("deny", False, "ip_denied"),
        ("require_reauth", False, "reauth_required"),
        ("require_reauth", True, "accepted"),
    ],
)
def test_resume_from_another_address_follows_the_policy(
    policy: str, fresh: bool, expected: str
) -> None:
    """A new client address gives a security notice when allowed, a rejection otherwise."""
    pair = _pair(ip_policy=policy)
    pair.drop()
    assert pair.client.session is not None
    resume = Resume(
        versions=(1,),
        session_id="s1",
        resume_token=pair.client.session.resume_token,
        epoch="e1",
        last_seq=0,
    )
    result = _server(pair).resume(
        resume, now=pair.now, user_id="user-1", client_ip="127.0.0.7", credential_fresh=fresh
    )
    if expected != "accepted":
        assert isinstance(result, ResumeRefused)
        assert expected == result.rejected.reason
        assert SessionState.DETACHED == _server(pair).state
        return
    assert isinstance(result, ResumeAccepted)
    frames = [codec.decode_server(f) for f in _server(pair).data_to_send()]
    notice = frames[-1]
    assert isinstance(notice, SecurityNotice)
    assert ("127.0.0.1", "127.0.0.7", policy) == (
        notice.previous_ip,
        notice.current_ip,
        notice.policy,
    )


def test_epoch_change_is_reported_as_degraded() -> None:
    """A client holding another epoch learns the server lost its stream."""
    pair = _pair()
    pair.server_send("a")
    pair.drop()
    _server(pair).change_epoch("e2")
    pair.reconnect()
    pair.settle()
    resumed = _attached(pair)[-1]
    assert ("degraded", "e2") == (resumed.outcome, resumed.epoch)
    assert ["epoch_changed"] == [w.code for w in resumed.warnings]


def test_replay_buffer_overflow_declares_the_dropped_range() -> None:
    """A bounded replay buffer that overflowed while detached gives degraded with a missed range."""
    limits = Limits(max_frame_bytes=65536, replay_buffer_max=2)
    pair = _pair(limits=limits)
    pair.drop()
    for text in "abcd":
        pair.server_send(text)
    pair.reconnect()
    pair.settle()
    resumed = _attached(pair)[-1]
    assert ("degraded", SeqRange(first=1, last=2)) == (resumed.outcome, resumed.missed)
    assert ["c", "d"] == [m.text for m in pair.delivered]  # type: ignore[union-attr]


def test_server_pings_and_closes_a_silent_connection() -> None:
    """The server pings on its interval and reports a connection silent past the timeout."""
    heartbeat = Heartbeat(interval_s=5.0, timeout_s=12.0)
    pair = _pair(heartbeat=heartbeat)
    server = _server(pair)
    pair.advance(5)
    assert [Ping(nonce=1)] == [codec.decode_server(f) for f in pair.to_client]
    pair.to_client.clear()  # the pings never arrive: a half-open connection
    pair.advance(5)
    pair.advance(5)
    assert any(isinstance(e, HeartbeatTimedOut) for e in pair.server_events)
    assert SessionState.DETACHED == server.state


def test_pong_keeps_the_connection_alive() -> None:
    """A client that answers pings is never timed out."""
    pair = _pair(heartbeat=Heartbeat(interval_s=5.0, timeout_s=12.0))
    for _ in range(10):
        pair.advance(5)
        pair.settle()
    assert SessionState.ATTACHED == _server(pair).state


def test_unsupported_version_is_rejected() -> None:
    """A resume offering no common version is refused with its close code."""
    pair = _pair()
    pair.drop()
    resume = Resume(versions=(9,), session_id="s1", resume_token="x", epoch="e1", last_seq=0)
    result = _server(pair).resume(resume, now=0, user_id="user-1", client_ip="127.0.0.1")
    assert isinstance(result, ResumeRefused)
    assert CloseCode.UNSUPPORTED_VERSION == result.close_code


def test_resume_claiming_less_than_it_acked_is_invalid() -> None:
    """A last_seq below what the client already acknowledged is a protocol error."""
    pair = _pair()
    pair.server_send("a")
    pair.settle()
    pair.drop()
    assert pair.client.session is not None
    resume = Resume(
        versions=(1,),
        session_id="s1",
        resume_token=pair.client.session.resume_token,
        epoch="e1",
        last_seq=0,
    )
    result = _server(pair).resume(resume, now=0, user_id="user-1", client_ip="127.0.0.1")
    assert isinstance(result, ResumeRefused)
    assert "invalid_resume" == result.rejected.reason


def test_bye_closes_the_session_for_good() -> None:
    """After bye the server forgets the session and refuses resumes."""
    pair = _pair()
    pair.client.bye()
    pair.settle()
    assert SessionState.CLOSED == _server(pair).state


def test_undeclared_gap_is_reported_in_report_mode() -> None:
    """A server that skips a seq without declaring it shows up as a SequenceGap event."""
    client = ClientProtocol(on_gap="report")
    pair = ProtocolPair(client=client, token_factory=counting_tokens())
    pair.connect()
    pair.settle()
    frame = (
        b'{"type":"reply_chunk","seq":2,"in_reply_to":"x","chunk_index":0,"text":"t","final":true}'
    )
    events = client.receive(frame)
    assert SequenceGap(expected=1, received=2) == events[0]


def test_undeclared_gap_raises_by_default() -> None:
    """A reference client treats an undeclared gap as the server breaking the protocol."""
    pair = _pair()
    frame = (
        b'{"type":"reply_chunk","seq":2,"in_reply_to":"x","chunk_index":0,"text":"t","final":true}'
    )
    with pytest.raises(RemoteProtocolError) as caught:
        pair.client.receive(frame)
    assert "sequence_gap" == caught.value.error_code


def test_client_misuse_is_a_local_error() -> None:
    """Sending a request before any session exists is the caller's bug."""
    with pytest.raises(LocalProtocolError):
        ClientProtocol().send_user_message("too early")


def test_server_refuses_a_second_hello_on_an_open_session() -> None:
    """hello on an attached session is a protocol error, not a new session."""
    pair = _pair()
    with pytest.raises(RemoteProtocolError):
        _server(pair).receive(Hello(versions=(1,)), now=0)


def test_windows_are_configurable() -> None:
    """Custom windows change which outcome a gap gets."""
    pair = _pair(windows=Windows(full_s=5.0, resumable_s=10.0))
    pair.drop()
    pair.advance(6)
    pair.reconnect()
    pair.settle()
    assert "degraded" == _attached(pair)[-1].outcome


def test_client_that_lost_its_counters_continues_after_the_server() -> None:
    """A resume from saved credentials with fresh counters numbers requests after the server's."""
    pair = _pair()
    pair.client.send_user_message("one")
    pair.settle()
    pair.drop()
    reloaded = ClientProtocol()
    reloaded.session = pair.client.session
    reloaded.state = ClientState.DISCONNECTED
    pair.client = reloaded
    pair.reconnect()
    pair.settle()
    request = reloaded.send_user_message("two")
    pair.settle()
    assert 2 == request.seq
    assert ["one", "two"] == [r.text for r in pair.processed]  # type: ignore[union-attr]
