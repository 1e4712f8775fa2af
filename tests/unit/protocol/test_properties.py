"""Properties of the protocol over any interleaving of traffic, drops and resumes (§5-§7).

Run with no event loop, through ``ProtocolPair``. CI runs at least 500 examples each.
"""

from __future__ import annotations

import dataclasses

from hypothesis import event, given, settings
from hypothesis import strategies as st

from reference_server.protocol import (
    ClientState,
    DuplicateDelivery,
    RejectedByServer,
    ResumeAccepted,
    SessionState,
)
from reference_server.protocol.messages import ReplyChunk
from reference_server.protocol.pair import ProtocolPair, counting_tokens

# Each step: (operation, size). Sizes bound how many frames move or how long time passes.
_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "server_send",
                "client_send",
                "to_client",
                "to_server",
                "answer",
                "drop",
                "drop",
                "half_open",
                "resume",
                "resume",
                "advance",
            ]
        ),
        st.integers(min_value=0, max_value=4),
    ),
    min_size=10,
    max_size=80,
)
FULL_WINDOW_S = 30.0


def _run(pair: ProtocolPair, ops: list[tuple[str, int]]) -> None:
    detached_for = 0.0
    for op, size in ops:
        live = pair.link_up and pair.client.state in (ClientState.ATTACHED, ClientState.RESUMING)
        if op == "server_send":
            for _ in range(size):
                pair.server_send(f"push-{len(pair.sent)}")
        elif op == "client_send" and pair.client.state is not ClientState.CONNECTING:
            for _ in range(size):
                pair.client.send_user_message(f"hello-{pair.client.next_seq}")
            pair.flush()
        elif op == "to_client":
            pair.deliver_to_client(size)
        elif op == "to_server":
            pair.deliver_to_server(size)
        elif op == "answer":
            pair.answer_requests()
        elif op == "drop" and live:
            pair.drop()
            detached_for = 0.0
        elif op == "half_open" and live:
            pair.drop_client_side()
            detached_for = 0.0
        elif op == "resume" and pair.client.state is ClientState.DISCONNECTED:
            pair.reconnect()
        elif op == "advance":
            # Resumes stay inside the full replay window: time passes only while that holds.
            step = float(size)
            if pair.client.state is ClientState.ATTACHED or detached_for + step < FULL_WINDOW_S - 1:
                detached_for += step
                pair.advance(step)


def _finish(pair: ProtocolPair) -> None:
    for _ in range(5):
        if pair.client.state is ClientState.DISCONNECTED:
            pair.reconnect()
        pair.settle()
        pair.answer_requests()
        pair.settle()
        if pair.client.state is ClientState.ATTACHED and not pair.client.unacked:
            return
    raise AssertionError(f"client did not settle: {pair.client.state}, {pair.client.unacked}")


@settings(max_examples=500, deadline=None)
@given(ops=_OPS)
def test_client_ends_with_exactly_the_servers_sequence(ops: list[tuple[str, int]]) -> None:
    """Whatever is sent, lost and resumed inside the full window, nothing is lost or doubled."""
    pair = ProtocolPair(token_factory=counting_tokens())
    pair.connect()
    pair.settle()
    _run(pair, ops)
    _finish(pair)

    assert pair.sent == pair.delivered
    assert [m.seq for m in pair.delivered] == list(range(1, len(pair.sent) + 1))
    assert [] == [
        e for e in pair.client_events if isinstance(e, DuplicateDelivery | RejectedByServer)
    ]
    resumes = [r for r in pair.resume_results if isinstance(r, ResumeAccepted)]
    event(f"resumes: {min(len(resumes), 3)}")
    event(f"replayed: {min(sum(r.replayed for r in resumes), 3)}")
    event(f"takeovers: {min(sum(r.taken_over is not None for r in resumes), 2)}")
    # Two ways: every client request was processed exactly once, in the order sent.
    sent_ids = [f"u{seq}" for seq in range(1, pair.client.next_seq)]
    assert sent_ids == [r.id for r in pair.processed]
    answered = [m.in_reply_to for m in pair.delivered if isinstance(m, ReplyChunk)]
    assert sent_ids == [i for i in answered if i != "push"]


@settings(max_examples=500, deadline=None)
@given(
    cycles=st.integers(min_value=1, max_value=8),
    reuse_at=st.integers(min_value=0, max_value=7),
    pick=st.integers(min_value=0, max_value=100),
)
def test_a_resume_token_works_once_and_reuse_revokes(cycles: int, reuse_at: int, pick: int) -> None:
    """After a resume is committed, presenting any earlier token revokes the session."""
    pair = ProtocolPair(token_factory=counting_tokens())
    pair.connect()
    pair.settle()
    assert pair.client.session is not None
    tokens = [pair.client.session.resume_token]
    for _ in range(cycles):
        pair.server_send("x")
        pair.drop()
        pair.advance(1.0)
        pair.reconnect()
        pair.settle()  # the client's ack commits the rotation
        assert pair.client.session is not None
        assert ClientState.ATTACHED == pair.client.state
        assert pair.client.session.resume_token not in tokens
        tokens.append(pair.client.session.resume_token)
    # A thief presents an old token while the rightful client is away.
    stolen = tokens[min(reuse_at, len(tokens) - 2) if pick % 2 else pick % (len(tokens) - 1)]
    pair.drop()
    assert pair.server is not None
    session = pair.client.session
    assert session is not None
    thief = ProtocolPair(token_factory=counting_tokens("thief"))
    thief.server = pair.server
    thief.client.session = dataclasses.replace(session, resume_token=stolen)
    thief.client.state = ClientState.DISCONNECTED
    thief.client.last_seq = pair.client.last_seq
    thief.reconnect()
    thief.settle()
    assert ["token_reused"] == [r.reason for r in thief.rejections]
    assert SessionState.REVOKED == pair.server.state
    # The session is gone for the rightful client too.
    pair.reconnect()
    pair.settle()
    assert ["session_revoked"] == [r.reason for r in pair.rejections]
    assert ClientState.CLOSED == pair.client.state
