"""Rules that revision 1.1 of docs/protocol.md decided, through the in-memory pair."""

from __future__ import annotations

import dataclasses

import pytest

from reference_server.protocol import (
    ClientProtocol,
    ClientState,
    RemoteProtocolError,
    ResumeAccepted,
    ResumeRefused,
    ServerClosing,
    SessionConfig,
    SessionState,
)
from reference_server.protocol.messages import Resume, SeqRange, UserMessage
from reference_server.protocol.pair import ProtocolPair, counting_tokens


def _pair(**config: object) -> ProtocolPair:
    pair = ProtocolPair(config=SessionConfig(**config), token_factory=counting_tokens())  # type: ignore[arg-type]
    pair.connect()
    pair.settle()
    return pair


def _resume_with(pair: ProtocolPair, token: str, *, user: str = "user-1", epoch: str = "e1"):  # type: ignore[no-untyped-def]
    assert pair.server is not None
    request = Resume(
        versions=(2,),
        session_id=pair.server.session_id,
        resume_token=token,
        epoch=epoch,
        last_seq=pair.client.last_seq,
    )
    return pair.server.resume(request, now=pair.now, user_id=user, client_ip=pair.client_ip)


def test_a_stranger_with_a_consumed_token_cannot_revoke_the_session() -> None:
    """§7.2 check 4 comes before the token checks: another user presenting a consumed token
    gets auth_failed and the owner's session lives on."""
    pair = _pair()
    assert pair.client.session is not None
    consumed = pair.client.session.resume_token
    pair.drop()
    pair.reconnect()
    pair.settle()  # the client's ack commits the rotation: `consumed` is consumed now
    result = _resume_with(pair, consumed, user="mallory")
    assert isinstance(result, ResumeRefused)
    assert ("auth_failed", False) == (result.rejected.reason, result.revoked)
    assert SessionState.ATTACHED == pair.server.state  # type: ignore[union-attr]
    owner = _resume_with(pair, consumed)  # the owner's own credential: that is theft
    assert isinstance(owner, ResumeRefused)
    assert ("token_reused", True) == (owner.rejected.reason, owner.revoked)


def test_a_frame_that_decodes_commits_the_rotation_even_if_refused() -> None:
    """§7.2.1: a frame that decodes commits, whatever follows; here a request that skips a
    seq (refused with sequence_gap) still proves the client holds the new token."""
    pair = _pair()
    assert pair.client.session is not None
    assert pair.server is not None
    first = pair.client.session.resume_token
    pair.drop()
    pair.reconnect()
    pair.deliver_to_server()
    with pytest.raises(RemoteProtocolError, match="client seq 5"):
        pair.server.receive(UserMessage(id="x", seq=5, text="gap"), now=pair.now)
    pair.drop()
    result = _resume_with(pair, first)
    assert isinstance(result, ResumeRefused)
    assert "token_reused" == result.rejected.reason


def test_several_lost_resumed_in_a_row_keep_the_previous_token_usable() -> None:
    """§7.2.1: while no frame commits, the previous token works again and again; each time
    the token issued by the lost resumed is retired, so presenting one of those is reuse."""
    pair = _pair()
    assert pair.client.session is not None
    assert pair.server is not None
    first = pair.client.session.resume_token
    pair.drop()
    for _ in range(3):
        result = _resume_with(pair, first)
        assert isinstance(result, ResumeAccepted)
        pair.server.data_to_send()  # resumed is sent, and lost
        pair.server.connection_lost(pair.now)
    never_delivered = "token-2"  # issued by the first lost resumed
    thief = _resume_with(pair, never_delivered)
    assert isinstance(thief, ResumeRefused)
    assert "token_reused" == thief.rejected.reason


def test_an_epoch_the_session_never_had_declares_the_unacknowledged_range_missed() -> None:
    """§8.1: a wrong epoch (not a real epoch change) is degraded with epoch_unknown, and what
    the server held unacknowledged is declared missed instead of taken as received."""
    pair = _pair()
    pair.server_send("a")
    pair.settle()  # seq 1 acknowledged
    pair.drop()
    pair.server_send("b")
    pair.server_send("c")
    assert pair.client.session is not None
    pair.client.session = dataclasses.replace(pair.client.session, epoch="corrupted")
    pair.reconnect()
    pair.settle()
    result = pair.resume_results[-1]
    assert isinstance(result, ResumeAccepted)
    assert ("degraded", SeqRange(first=2, last=3), 0) == (
        result.outcome,
        result.missed,
        result.replayed,
    )
    pair.server_send("d")
    pair.settle()
    assert [1, 4] == [m.seq for m in pair.delivered]
    assert ClientState.ATTACHED == pair.client.state


def test_a_real_epoch_change_is_epoch_changed_with_nothing_missed() -> None:
    """§8.1: the session's previous epoch is recognised: epoch_changed, missed null."""
    pair = _pair()
    pair.server_send("a")
    pair.drop()
    assert pair.server is not None
    pair.server.change_epoch("e2")
    pair.reconnect()
    pair.settle()
    result = pair.resume_results[-1]
    assert isinstance(result, ResumeAccepted)
    assert ("degraded", None) == (result.outcome, result.missed)
    assert ("e1",) == pair.server.snapshot().previous_epochs


def _attached_client() -> ClientProtocol:
    client = ClientProtocol()
    client.hello()
    client.data_to_send()
    welcome = (
        '{"type":"welcome","protocol_version":2,"session_id":"s","resume_token":"t",'
        '"epoch":"e","windows":{"full_s":30,"resumable_s":300},'
        '"heartbeat":{"interval_s":10,"timeout_s":30},'
        '"limits":{"max_frame_bytes":65536,"replay_buffer_max":1024},'
        '"ip_policy":"allow","capabilities":["replay","teleportation"],"client_ip":"::1"}'
    )
    client.receive(welcome)
    return client


@pytest.mark.parametrize(
    ("code", "reason", "final"),
    [
        (4001, "session_taken_over", False),
        (4001, "moved", False),
        (4004, "x", True),
        (4999, "y", False),
    ],
)
def test_a_client_decides_a_closing_on_its_code_whatever_its_reason(
    code: int, reason: str, final: bool
) -> None:
    """§4.2, §13.1: closing.reason is open and informational; 4004, 4005, 4008 are final,
    any other code leaves the session resumable. Unknown capabilities are ignored."""
    client = _attached_client()
    assert client.session is not None
    assert ("replay", "teleportation") == client.session.capabilities
    (event,) = client.receive(
        f'{{"type":"closing","code":{code},"reason":"{reason}","message":""}}'
    )
    assert isinstance(event, ServerClosing)
    assert final == event.final
    assert (ClientState.CLOSED if final else ClientState.DISCONNECTED) == client.state


def test_a_client_reports_an_ack_above_its_last_request_and_goes_on() -> None:
    """§5.1: an ack for a client seq never sent is the server's violation: reported, and the
    client's state is untouched."""
    client = _attached_client()
    client.send_user_message("hi")
    with pytest.raises(RemoteProtocolError, match="never sent"):
        client.receive('{"type":"ack","seq":5}')
    assert (ClientState.ATTACHED, [1]) == (client.state, list(client.unacked))
