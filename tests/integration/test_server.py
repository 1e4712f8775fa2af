"""The reference server over real sockets on 127.0.0.1 (docs/protocol.md, rule by rule)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from reference_server import admin
from reference_server.aio_client import AsyncClient, HandshakeRefusedError
from reference_server.app import ReferenceServer
from reference_server.protocol import (
    Attached,
    ClientState,
    CloseCode,
    DuplicateDelivery,
    RejectedByServer,
    ServerClosing,
    codec,
)
from reference_server.protocol.messages import (
    Error,
    ReplyChunk,
    Resume,
    SecurityNotice,
    ToolCall,
)
from reference_server.registry import SessionHost

from .conftest import ADMIN, SECRET, config, token

Factory = Callable[..., AsyncClient]


def _http(url: str) -> str:
    return url.replace("ws://", "http://").rsplit("/", 1)[0]


async def _advance(server: ReferenceServer, seconds: float) -> None:
    await admin.advance_clock(server.url, ADMIN, seconds)


async def _closed(ws: ClientConnection, timeout: float) -> int | None:
    """Read until the server closes the connection; return its close code."""
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()
    return ws.close_code


async def _eventually(condition: Callable[[], bool], timeout: float) -> None:
    """Wait for server-side state, which notifies no one: poll it, within ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:  # nothing here to wait on but time
            if condition():
                return
            await asyncio.sleep(0.01)


def _seqs(client: AsyncClient) -> list[int]:
    return [m.seq for m in client.delivered if m.seq is not None]


def _no_duplicates(client: AsyncClient) -> None:
    assert [] == [e for e in client.events if isinstance(e, DuplicateDelivery)]
    assert [] == client.errors
    assert list(range(1, len(client.delivered) + 1)) == _seqs(client)


@pytest.mark.asyncio
async def test_welcome_advertises_the_session_terms(client_factory: Factory) -> None:
    """A hello gets a welcome with windows, heartbeat, policy and the virtual-clock capability."""
    client = client_factory()
    attached = await client.connect()
    assert isinstance(attached, Attached)
    session = client.protocol.session
    assert session is not None
    assert (30.0, 300.0, "allow") == (
        session.windows.full_s,
        session.windows.resumable_s,
        session.ip_policy,
    )
    assert "virtual_clock" in session.capabilities
    assert "127.0.0.1" == session.client_ip


@pytest.mark.asyncio
async def test_health_and_metrics_answer_over_http(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """GET /healthz says ok (and only that) and GET /metrics exposes the protocol's counters;
    a single server has no store link, so no ws_store metrics."""
    await client_factory().connect()
    async with httpx.AsyncClient(timeout=5) as http:
        health = await http.get(_http(server.url) + "/healthz")
        metrics = await http.get(_http(server.url) + "/metrics")
    assert (200, "ok\n") == (health.status_code, health.text)
    assert "ws_sessions_opened_total 1.0" in metrics.text
    assert "process_resident_memory_bytes" in metrics.text
    assert "ws_resume_seconds_bucket" in metrics.text
    assert "ws_store_" not in metrics.text


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("credential", "expected"),
    [
        (None, "no credential"),
        ("not-a-jwt", "invalid credential"),
        ("wrong-secret", "invalid credential"),
        ("expired", "credential expired"),
    ],
)
async def test_bad_credentials_are_refused_at_the_handshake(
    server: ReferenceServer, credential: str | None, expected: str
) -> None:
    """Missing, malformed, wrongly signed and expired tokens get HTTP 401 with the reason."""
    from reference_server import auth

    raw = {
        None: None,
        "not-a-jwt": "not-a-jwt",
        "wrong-secret": auth.mint("alice", "another-secret-0123456789abcdef0123"),
        "expired": token(ttl_s=-10),
    }[credential]
    client = AsyncClient(server.url, raw)
    with pytest.raises(HandshakeRefusedError) as refused:
        await client.connect()
    assert 401 == refused.value.status
    assert expected in refused.value.body


@pytest.mark.asyncio
async def test_token_in_query_string_is_accepted(server: ReferenceServer) -> None:
    """Clients that cannot set headers may send the token as ?access_token=."""
    client = AsyncClient(server.url, token(), token_in_query=True)
    assert isinstance(await client.connect(), Attached)
    await client.drop()


@pytest.mark.asyncio
async def test_reply_is_streamed_in_chunks_with_a_tool_call(client_factory: Factory) -> None:
    """A user message is answered by a tool call and several chunks, the last marked final."""
    client = client_factory()
    await client.connect()
    reply = await client.chat("what is 6 * 7")
    assert isinstance(reply[0], ToolCall)
    assert "42" == reply[0].call.result
    chunks = [m for m in reply if isinstance(m, ReplyChunk)]
    assert len(chunks) >= 3
    assert [False] * (len(chunks) - 1) + [True] == [c.final for c in chunks]
    assert list(range(len(chunks))) == [c.chunk_index for c in chunks]


@pytest.mark.asyncio
async def test_history_is_paged_from_the_store(client_factory: Factory) -> None:
    """get_conversation_history returns pages oldest first, with total and next_before."""
    client = client_factory()
    await client.connect()
    for i in range(3):
        await client.chat(f"message {i}")
    newest = await client.history(limit=4)
    assert (6, 2) == (newest.total, newest.next_before)
    assert [2, 3, 4, 5] == [e.index for e in newest.entries]
    older = await client.history(before=newest.next_before, limit=4)
    assert ([0, 1], None) == ([e.index for e in older.entries], older.next_before)
    assert ["user", "agent"] == [e.role for e in older.entries]
    assert "message 0" == older.entries[0].text


@pytest.mark.asyncio
async def test_agent_context_is_answered_from_the_store(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """get_agent_context returns the memory, variables and tool calls the agent stored."""
    client = client_factory()
    await client.connect()
    await client.chat("my name is Ada")
    await client.chat("set budget = 12")
    await client.chat("what is budget * 2")
    context = (await client.agent_context()).context
    assert {"name": "Ada"} == context.memory
    assert {"budget": 12} == context.variables
    assert ["24"] == [c.result for c in context.tool_calls]
    assert 3 == context.workflow.step


@pytest.mark.asyncio
async def test_drop_mid_stream_resumes_with_the_rest_of_the_stream() -> None:
    """A drop in the middle of a streamed reply: the resume delivers the rest, nothing twice."""
    async with ReferenceServer(config(chunk_delay_s=0.05)) as server:
        client = AsyncClient(server.url, token())
        await client.connect()
        message_id = await client.send_user_message("my name is Ada and please tell me a story")
        await client.wait_for(
            lambda: next((m for m in client.delivered if isinstance(m, ReplyChunk)), None),
            5,
            "a chunk",
        )
        await client.drop()
        before = len(client.delivered)
        attached = await client.resume()
        assert isinstance(attached, Attached)
        assert "full" == attached.outcome
        assert attached.replay_count >= 1
        reply = await client.reply_to(message_id)
        assert len(reply) > before
        _no_duplicates(client)
        await client.drop()


@pytest.mark.asyncio
async def test_brief_gap_is_full_with_everything_preserved(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """15 s of virtual time away: resume is full, history and context intact."""
    client = client_factory()
    await client.connect()
    await client.chat("my name is Ada")
    context_before = (await client.agent_context()).context
    await client.drop()
    await _advance(server, 15)
    attached = await client.resume()
    assert isinstance(attached, Attached)
    assert ("full", ()) == (attached.outcome, attached.warnings)
    assert 15 <= attached.gap_s < 20
    assert context_before == (await client.agent_context()).context
    _no_duplicates(client)


@pytest.mark.asyncio
async def test_medium_gap_is_degraded_with_a_warning_and_context_kept(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """2 min away: resume is degraded with replay_window_passed; history and context are kept."""
    client = client_factory()
    await client.connect()
    await client.chat("my name is Ada")
    context_before = (await client.agent_context()).context
    await client.drop()
    await _advance(server, 120)
    attached = await client.resume()
    assert isinstance(attached, Attached)
    assert "degraded" == attached.outcome
    assert ["replay_window_passed"] == [w.code for w in attached.warnings]
    assert context_before == (await client.agent_context()).context
    assert 2 == (await client.history()).total


@pytest.mark.asyncio
async def test_long_gap_expires_and_leaves_no_state(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """10 min away: the session expires, the store holds nothing of it, a new one can start."""
    client = client_factory()
    await client.connect()
    await client.chat("my name is Ada")
    assert client.protocol.session is not None
    session_id = client.protocol.session.session_id
    await client.drop()
    await _advance(server, 600)
    assert {
        "sessions": 0,
        "replay": 0,
        "request_ids": 0,
        "history": 0,
        "context": 0,
    } == server.store.holds(session_id)
    assert session_id not in server.hosts
    rejected = await client.resume()
    assert isinstance(rejected, RejectedByServer)
    assert ("session_expired", True) == (rejected.reason, rejected.final)
    assert isinstance(await client.connect(), Attached)
    assert 0 == (await client.history()).total


@pytest.mark.asyncio
async def test_reused_token_revokes_the_session(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """A token presented after it was used revokes the session for everyone."""
    client = client_factory()
    await client.connect()
    assert client.protocol.session is not None
    first_token = client.protocol.session.resume_token
    await client.drop()
    await client.resume()
    await client.chat("hello")  # the client's frames commit the rotation
    thief = client_factory()
    thief.protocol.session = dataclasses.replace(client.protocol.session, resume_token=first_token)
    thief.protocol.state = client.protocol.state.__class__.DISCONNECTED
    rejected = await thief.resume()
    assert isinstance(rejected, RejectedByServer)
    assert "token_reused" == rejected.reason
    await client.wait_for(
        lambda: CloseCode.SESSION_REVOKED in client.close_codes or None,
        5,
        "the victim closed with 4005",
    )
    assert ClientState.CLOSED == client.protocol.state
    assert "ws_token_reuse_detections_total 1.0" in server.metrics.render().decode()


@pytest.mark.asyncio
async def test_second_connection_takes_the_session_over(client_factory: Factory) -> None:
    """A resume while attached moves the session; the first connection is told why and closed."""
    first = client_factory()
    await first.connect()
    await first.chat("hello")
    second = client_factory()
    second.protocol.session = first.protocol.session
    second.protocol.last_seq = first.protocol.last_seq
    second.protocol.state = first.protocol.state.__class__.DISCONNECTED
    attached = await second.resume()
    assert isinstance(attached, Attached)
    closing = await first.wait_for(
        lambda: next((e for e in first.events if isinstance(e, ServerClosing)), None), 5, "closing"
    )
    assert ("session_taken_over", CloseCode.SESSION_TAKEN_OVER) == (
        closing.closing.reason,
        closing.closing.code,
    )
    reply = await second.chat("still here?")
    assert reply


@pytest.mark.asyncio
async def test_a_resume_taken_over_before_its_answer_is_written_gets_it_then_4001(
    server: ReferenceServer, client_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§7.5: the first resume is accepted, and the second is decided before the first's
    ``resumed`` is written (held here at the moment the event loop could interleave them).
    As one server deciding them in order: the first gets its ``resumed``, then closing 4001;
    the second holds the session."""
    holder = client_factory()
    await holder.connect()
    await holder.chat("hello")
    await holder.drop()
    first, second = client_factory(), client_factory()
    for racer in (first, second):
        racer.protocol.session = holder.protocol.session
        racer.protocol.last_seq = holder.protocol.last_seq
        racer.protocol.state = ClientState.DISCONNECTED
    decide = server.registry.resume
    first_decided, second_decided = asyncio.Event(), asyncio.Event()

    async def resume(*args: Any) -> SessionHost | None:
        host = await decide(*args)
        if not first_decided.is_set():
            first_decided.set()
            await asyncio.wait_for(second_decided.wait(), 5)
        else:
            second_decided.set()
        return host

    monkeypatch.setattr(server.registry, "resume", resume)
    first_resume = asyncio.ensure_future(first.resume())
    await asyncio.wait_for(first_decided.wait(), 5)
    assert isinstance(await second.resume(), Attached)
    assert isinstance(await first_resume, Attached)
    closing = await first.wait_for(
        lambda: next((e for e in first.events if isinstance(e, ServerClosing)), None), 5, "closing"
    )
    assert CloseCode.SESSION_TAKEN_OVER == closing.closing.code
    assert await second.chat("still here?")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("policy", "expected"),
    [("allow", "notice"), ("deny", "ip_denied"), ("require_reauth", "reauth_required")],
)
async def test_resume_from_another_loopback_address_follows_the_policy(
    policy: str, expected: str
) -> None:
    """A resume from 127.0.0.7 is noticed and allowed, denied, or sent to re-authenticate."""
    from reference_server.protocol import SessionConfig

    async with ReferenceServer(
        config(session=SessionConfig(ip_policy=policy), reauth_max_age_s=0.0)
    ) as server:
        client = AsyncClient(server.url, token())
        await client.connect()
        await client.chat("my name is Ada")
        await client.drop()
        client.source_ip = "127.0.0.7"
        answer = await client.resume()
        if expected == "notice":
            assert isinstance(answer, Attached)
            notice = await client.wait_for(
                lambda: next((m for m in client.delivered if isinstance(m, SecurityNotice)), None),
                5,
                "notice",
            )
            assert ("127.0.0.1", "127.0.0.7", "allow") == (
                notice.previous_ip,
                notice.current_ip,
                notice.policy,
            )
            assert {"name": "Ada"} == (await client.agent_context()).context.memory
        else:
            assert isinstance(answer, RejectedByServer)
            assert expected == answer.reason
        await client.drop()


@pytest.mark.asyncio
async def test_fresh_credential_passes_require_reauth() -> None:
    """Under require_reauth, a credential issued just now counts as re-authentication."""
    from reference_server.protocol import SessionConfig

    async with ReferenceServer(config(session=SessionConfig(ip_policy="require_reauth"))) as server:
        client = AsyncClient(server.url, token())
        await client.connect()
        await client.drop()
        client.source_ip = "127.0.0.8"
        client.token = token()
        assert isinstance(await client.resume(), Attached)
        await client.drop()


@pytest.mark.asyncio
async def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    """X-Forwarded-For sets the client address only when the peer is a trusted proxy."""
    async with ReferenceServer(config(trusted_proxies=("127.0.0.1/32",))) as trusting:
        client = AsyncClient(trusting.url, token(), headers={"X-Forwarded-For": "203.0.113.9"})
        await client.connect()
        assert client.protocol.session is not None
        assert "203.0.113.9" == client.protocol.session.client_ip
        await client.drop()
    async with ReferenceServer(config()) as untrusting:
        client = AsyncClient(untrusting.url, token(), headers={"X-Forwarded-For": "203.0.113.9"})
        await client.connect()
        assert client.protocol.session is not None
        assert "127.0.0.1" == client.protocol.session.client_ip
        await client.drop()


@pytest.mark.asyncio
async def test_half_open_connection_is_closed_by_heartbeat_and_resumable() -> None:
    """A client that stops answering is closed within the heartbeat timeout; it can resume."""
    from reference_server.protocol import SessionConfig
    from reference_server.protocol.messages import Heartbeat

    heartbeat = Heartbeat(interval_s=0.1, timeout_s=0.4)
    async with ReferenceServer(
        config(session=SessionConfig(heartbeat=heartbeat), virtual_clock=False)
    ) as server:
        async with connect(
            server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
        ) as ws:
            await ws.send(b'{"type":"hello","versions":[1]}', text=True)
            welcome = codec.decode_server(await ws.recv(decode=False))
            # Never answer the pings: to the server this is a half-open connection.
            assert CloseCode.HEARTBEAT_TIMEOUT == await _closed(ws, 3)
        assert "ws_heartbeat_timeouts_total 1.0" in server.metrics.render().decode()
        host = server.hosts[welcome.session_id]  # type: ignore[union-attr]
        assert "detached" == host.session.state.value


@pytest.mark.asyncio
async def test_bad_frames_get_typed_errors_and_the_session_carries_on(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """Malformed JSON, unknown types and wrong fields get an error; the connection stays usable."""
    good = client_factory()
    await good.connect()
    async with connect(
        server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
    ) as ws:
        await ws.send(b'{"type":"hello","versions":[1]}', text=True)
        await ws.recv()
        answers = []
        for frame in ['{"type":', '{"type":"teleport"}', '{"type":"ack","seq":"x"}']:
            await ws.send(frame)
            answers.append(codec.decode_server(await ws.recv(decode=False)))
        assert ["malformed_json", "unknown_type", "invalid_message"] == [
            a.code for a in answers if isinstance(a, Error)
        ]
        await ws.send('{"type":"ping","nonce":5}')
        assert b'{"type":"pong","nonce":5}' == await ws.recv(decode=False)
    assert await good.chat("still fine")
    _no_duplicates(good)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00\x01binary", CloseCode.UNSUPPORTED_DATA),
        ("x" * (64 * 1024 + 1), CloseCode.MESSAGE_TOO_BIG),
        ('{"type":"user_message","id":"a","seq":5,"text":"gap"}', CloseCode.PROTOCOL_ERROR),
    ],
)
async def test_frames_that_break_the_stream_close_with_their_code(
    server: ReferenceServer, frame: str | bytes, code: int
) -> None:
    """Binary, oversize and out-of-sequence frames close the connection with a typed code."""
    async with connect(
        server.url,
        additional_headers={"Authorization": f"Bearer {token()}"},
        proxy=None,
        max_size=None,
    ) as ws:
        await ws.send(b'{"type":"hello","versions":[1]}', text=True)
        await ws.recv()
        await ws.send(frame)
        assert code == await _closed(ws, 5)


@pytest.mark.asyncio
async def test_a_flood_is_cut_off_with_policy_violation() -> None:
    """Too many frames too fast close the connection with 1008; the server stays up."""
    async with ReferenceServer(config(max_frames_per_s=10.0, frame_burst=20)) as server:
        async with connect(
            server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
        ) as ws:
            await ws.send(b'{"type":"hello","versions":[1]}', text=True)
            await ws.recv()
            with contextlib.suppress(ConnectionClosed):
                for i in range(200):
                    await ws.send(f'{{"type":"ping","nonce":{i}}}')
            assert CloseCode.POLICY_VIOLATION == await _closed(ws, 5)
        client = AsyncClient(server.url, token())
        assert isinstance(await client.connect(), Attached)
        await client.drop()


@pytest.mark.asyncio
async def test_first_frame_must_be_hello_or_resume(server: ReferenceServer) -> None:
    """Anything else first is a protocol error with close code 4000."""
    async with connect(
        server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
    ) as ws:
        await ws.send('{"type":"ack","seq":0}')
        error = codec.decode_server(await ws.recv(decode=False))
        assert isinstance(error, Error)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert CloseCode.PROTOCOL_ERROR == ws.close_code


@pytest.mark.asyncio
async def test_unknown_session_is_a_typed_rejection(server: ReferenceServer) -> None:
    """A resume for a session the server never had is rejected as session_unknown."""
    async with connect(
        server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
    ) as ws:
        await ws.send(
            '{"type":"resume","versions":[1],"session_id":"nope","resume_token":"t","epoch":"e","last_seq":0}'
        )
        rejected = codec.decode_server(await ws.recv(decode=False))
        assert "session_unknown" == getattr(rejected, "reason", None)


@pytest.mark.asyncio
async def test_resume_by_another_user_is_refused(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """Auth is checked again on resume: another user's credential cannot take the session."""
    client = client_factory()
    await client.connect()
    await client.drop()
    client.token = token("mallory")
    rejected = await client.resume()
    assert isinstance(rejected, RejectedByServer)
    assert "auth_failed" == rejected.reason


@pytest.mark.asyncio
async def test_admin_channel_needs_the_token_and_a_virtual_clock(server: ReferenceServer) -> None:
    """The admin channel refuses a wrong token, and does not exist on a real-clock server."""
    with pytest.raises(Exception, match="401"):
        await admin.advance_clock(server.url, "wrong", 1)
    async with ReferenceServer(config(virtual_clock=False)) as real:
        with pytest.raises(Exception, match="404"):
            await admin.advance_clock(real.url, ADMIN, 1)


@pytest.mark.asyncio
async def test_bye_ends_the_session_for_good(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """After bye the session is deleted and cannot be resumed."""
    client = client_factory()
    await client.connect()
    assert client.protocol.session is not None
    session_id = client.protocol.session.session_id
    await client.bye()
    await asyncio.sleep(0.05)
    assert session_id not in server.hosts
    assert "closed" == server.store.tombstone(session_id)


_ = SECRET


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("first", "again", "canonical"),
    [
        ("203.0.113.7", "::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8::1", "2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:DB8::A", "2001:db8:0::a", "2001:db8::a"),
    ],
)
async def test_addresses_are_compared_in_canonical_form(
    first: str, again: str, canonical: str
) -> None:
    """§10: the same address written another way (IPv4-mapped IPv6, IPv6 case or zero
    compression) is the same address: no notice, and deny lets the resume through."""
    from reference_server.protocol import SessionConfig

    async with ReferenceServer(
        config(session=SessionConfig(ip_policy="deny"), trusted_proxies=("127.0.0.1/32",))
    ) as server:
        client = AsyncClient(server.url, token(), headers={"X-Forwarded-For": first})
        await client.connect()
        assert client.protocol.session is not None
        assert canonical == client.protocol.session.client_ip
        await client.drop()
        client.headers["X-Forwarded-For"] = again
        attached = await client.resume()
        assert isinstance(attached, Attached), attached
        assert canonical == client.protocol.session.client_ip
        await client.chat("still me")
        assert [] == [m for m in client.delivered if isinstance(m, SecurityNotice)]
        await client.drop()


HEARTBEAT_TOLERANCE_S = 0.25  # §9: a heartbeat close comes at most this late


@pytest.mark.asyncio
async def test_heartbeat_close_comes_at_its_deadline_not_at_the_next_sweep() -> None:
    """§9: silence of timeout_s closes the connection with 4007 at that deadline, within the
    spec's tolerance, however rarely the sweeper runs; the first ping comes interval_s after
    the welcome."""
    from reference_server.protocol import SessionConfig
    from reference_server.protocol.messages import Heartbeat, Ping

    heartbeat = Heartbeat(interval_s=0.3, timeout_s=0.9)
    async with (
        ReferenceServer(
            config(
                session=SessionConfig(heartbeat=heartbeat), virtual_clock=False, sweep_interval_s=30
            )
        ) as server,
        connect(
            server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
        ) as ws,
    ):
        await ws.send(b'{"type":"hello","versions":[1]}', text=True)
        await ws.recv()
        await ws.send(b'{"type":"ack","seq":0}', text=True)
        silent_since = asyncio.get_running_loop().time()
        first = codec.decode_server(await asyncio.wait_for(ws.recv(decode=False), 2))
        first_ping_after = asyncio.get_running_loop().time() - silent_since
        assert isinstance(first, Ping)
        assert CloseCode.HEARTBEAT_TIMEOUT == await _closed(ws, 3)
        closed_after = asyncio.get_running_loop().time() - silent_since
    assert heartbeat.interval_s - 0.05 <= first_ping_after < heartbeat.interval_s + 0.25
    assert heartbeat.timeout_s <= closed_after < heartbeat.timeout_s + HEARTBEAT_TOLERANCE_S


@pytest.mark.asyncio
async def test_processed_request_ids_are_bounded_in_the_session_and_the_store() -> None:
    """§6.1: the server keeps the ids of the last request_ids_kept client seqs, in memory and
    in its store; a kept id under a new seq is a duplicate, a forgotten one is answered anew."""
    from reference_server.protocol import SessionConfig
    from reference_server.protocol.messages import Duplicate

    async with ReferenceServer(config(session=SessionConfig(request_ids_kept=2))) as server:
        client = AsyncClient(server.url, token())
        await client.connect()
        for n in range(1, 5):
            await client.reply_to(await client.send_user_message(f"turn {n}", f"m{n}"))
        assert client.protocol.session is not None
        session_id = client.protocol.session.session_id
        assert 2 == server.store.holds(session_id)["request_ids"]
        assert ["m3", "m4"] == list(server.hosts[session_id].session.processed_ids)

        await client.send_user_message("turn 4 again", "m4")
        duplicate = await client.wait_for(
            lambda: next((m for m in client.delivered if isinstance(m, Duplicate)), None),
            5,
            "a duplicate",
        )
        assert "m4" == duplicate.in_reply_to
        await client.send_user_message("turn 1 again", "m1")
        await client.wait_for(  # the first m1's reply is already there: wait for a second one
            lambda: (
                [m for m in client.delivered if isinstance(m, ReplyChunk) and m.final][4:] or None
            ),
            5,
            "a second reply to m1",
        )
        # Seq 5 was the duplicate (no new id), seq 6 is m1: the last two seqs hold one id.
        assert ["m1"] == list(server.hosts[session_id].session.processed_ids)
        assert 1 == server.store.holds(session_id)["request_ids"]
        await client.drop()


_V1_WELCOME = {
    "type",
    "protocol_version",
    "session_id",
    "resume_token",
    "epoch",
    "windows",
    "heartbeat",
    "limits",
    "ip_policy",
    "capabilities",
    "client_ip",
}


@pytest.mark.asyncio
async def test_a_version_1_client_gets_exactly_the_version_1_wire(server: ReferenceServer) -> None:
    """§4.1: a client offering only version 1 sees welcome and resumed with the members of
    revision 1.0 and nothing more, and the whole lifecycle works for it."""
    import json

    async with connect(
        server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
    ) as ws:
        await ws.send('{"type":"hello","versions":[1]}')
        welcome = json.loads(await ws.recv())
    assert _V1_WELCOME == set(welcome)
    assert {"max_frame_bytes", "replay_buffer_max"} == set(welcome["limits"])
    assert 1 == welcome["protocol_version"]

    client = AsyncClient(server.url, token(), versions=(1,))
    await client.connect()
    await client.chat("my name is Ada")
    await client.drop()
    attached = await client.resume()
    assert isinstance(attached, Attached)
    assert client.protocol.session is not None
    assert (1, None, None) == (
        client.protocol.session.protocol_version,
        client.protocol.session.limits.frames_per_s,
        client.protocol.session.reauth_max_age_s,
    )
    await client.drop()
    v2 = AsyncClient(server.url, token())
    await v2.connect()
    assert v2.protocol.session is not None
    assert (2, 1000.0, 2000, 1024, 60.0) == (
        v2.protocol.session.protocol_version,
        v2.protocol.session.limits.frames_per_s,
        v2.protocol.session.limits.frame_burst,
        v2.protocol.session.limits.request_ids_kept,
        v2.protocol.session.reauth_max_age_s,
    )
    await v2.drop()


@pytest.mark.asyncio
@pytest.mark.parametrize("versions", ["[]", "[0]", "[1.5]"])
async def test_a_bad_version_list_is_an_invalid_first_frame(
    server: ReferenceServer, versions: str
) -> None:
    """§4.1: an empty list, a zero or a non-integer version is invalid_message, close 4000."""
    async with connect(
        server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
    ) as ws:
        await ws.send(f'{{"type":"hello","versions":{versions}}}')
        error = codec.decode_server(await ws.recv(decode=False))
        assert ("invalid_message", CloseCode.PROTOCOL_ERROR) == (
            getattr(error, "code", None),
            await _closed(ws, 5),
        )


async def _raw_resume(server: ReferenceServer, session_id: str, resume_token: str) -> object:
    """Resume over a bare connection with ``resume_token``; return the server's first answer."""
    async with connect(
        server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
    ) as ws:
        resume = Resume(
            versions=(2,), session_id=session_id, resume_token=resume_token, epoch="x", last_seq=0
        )
        await ws.send(codec.encode(resume), text=True)
        return codec.decode_server(await ws.recv(decode=False))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("first_frame", "expected"),
    [(b'{"type":', "resumed"), (b'{"type":"ping","nonce":1}', "token_reused")],
)
async def test_only_a_first_frame_that_decodes_commits_the_rotation(
    server: ReferenceServer, first_frame: bytes, expected: str
) -> None:
    """§7.2.1: after resumed, a first frame that fails §4.2 does not commit the rotation (the
    presented token stays valid); one that decodes does (the token is consumed)."""
    from reference_server.protocol.messages import Rejected, Resumed, Welcome

    async with connect(
        server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
    ) as ws:
        await ws.send('{"type":"hello","versions":[2]}')
        welcome = codec.decode_server(await ws.recv(decode=False))
    assert isinstance(welcome, Welcome)
    async with connect(
        server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
    ) as ws:
        resume = Resume(
            versions=(2,),
            session_id=welcome.session_id,
            resume_token=welcome.resume_token,
            epoch=welcome.epoch,
            last_seq=0,
        )
        await ws.send(codec.encode(resume), text=True)
        assert isinstance(codec.decode_server(await ws.recv(decode=False)), Resumed)
        await ws.send(first_frame, text=True)
        await ws.recv()  # the error, or the pong: the frame was handled
    answer = await _raw_resume(server, welcome.session_id, welcome.resume_token)
    seen = answer.reason if isinstance(answer, Rejected) else type(answer).__name__.lower()
    assert expected == seen


@pytest.mark.asyncio
async def test_a_resume_after_bye_is_told_session_closed(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """§7.4: while the tombstone lasts, a resume of a session ended by bye gets session_closed
    and close 4008 (final), not session_unknown."""
    client = client_factory()
    await client.connect()
    await client.bye()
    client.protocol.state = ClientState.DISCONNECTED  # a client that forgot it said bye
    refused = await client.resume()
    assert isinstance(refused, RejectedByServer)
    assert ("session_closed", True) == (refused.reason, refused.final)
    code = await client.wait_for(
        lambda: client.close_codes[-1] if len(client.close_codes) == 2 else None, 5, "close"
    )
    assert CloseCode.SESSION_CLOSED == code


@pytest.mark.asyncio
async def test_close_frames_carry_the_snake_case_reason() -> None:
    """§13.1: the close frame's reason is the snake_case name of why (here a heartbeat)."""
    from reference_server.protocol import SessionConfig
    from reference_server.protocol.messages import Heartbeat

    heartbeat = Heartbeat(interval_s=0.1, timeout_s=0.3)
    async with (
        ReferenceServer(
            config(session=SessionConfig(heartbeat=heartbeat), virtual_clock=False)
        ) as server,
        connect(
            server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
        ) as ws,
    ):
        await ws.send('{"type":"hello","versions":[2]}')
        await _closed(ws, 3)
        assert "heartbeat_timeout" == ws.close_reason


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["garbage"], "127.0.0.1"),
        (["192.0.2.1", "203.0.113.9:5000"], "203.0.113.9"),
        (["[2001:DB8::7]:443"], "2001:db8::7"),
    ],
)
async def test_forwarded_for_syntax_over_a_real_handshake(lines: list[str], expected: str) -> None:
    """§10.1 on the wire: garbage is no address (the trusted peer is used), repeated lines are
    one list, ports and brackets are stripped; welcome reports the canonical address."""
    async with (
        ReferenceServer(config(trusted_proxies=("127.0.0.1/32",))) as server,
        connect(
            server.url,
            additional_headers=[("Authorization", f"Bearer {token()}")]
            + [("X-Forwarded-For", line) for line in lines],
            proxy=None,
        ) as ws,
    ):
        await ws.send('{"type":"hello","versions":[2]}')
        welcome = codec.decode_server(await ws.recv(decode=False))
    assert expected == getattr(welcome, "client_ip", None)


@pytest.mark.asyncio
async def test_acks_and_pongs_do_not_count_against_the_rate_limit() -> None:
    """§12.1: a client that acks and pongs far above the rate limit is not flood-closed; the
    limit's 1008 comes with retry_after_ms, the time the bucket takes to refill."""
    async with (
        ReferenceServer(config(max_frames_per_s=10.0, frame_burst=20)) as server,
        connect(
            server.url, additional_headers={"Authorization": f"Bearer {token()}"}, proxy=None
        ) as ws,
    ):
        await ws.send('{"type":"hello","versions":[2]}')
        await ws.recv()
        for _ in range(200):
            await ws.send('{"type":"ack","seq":0}')
            await ws.send('{"type":"pong","nonce":1}')
        await ws.send('{"type":"ping","nonce":7}')
        assert b'{"type":"pong","nonce":7}' == await asyncio.wait_for(ws.recv(decode=False), 5)
        with contextlib.suppress(ConnectionClosed):
            for i in range(40):
                await ws.send(f'{{"type":"ping","nonce":{i}}}')
        frames = []
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    frames.append(codec.decode_server(await ws.recv(decode=False)))
        errors = [f for f in frames if isinstance(f, Error)]
        assert [("rate_limited", 2000)] == [(e.code, e.retry_after_ms) for e in errors]
        assert CloseCode.POLICY_VIOLATION == ws.close_code


@pytest.mark.asyncio
async def test_a_client_paces_its_resends_within_the_advertised_rate() -> None:
    """§12.1: requests queued while away are resent after resumed; a version-2 client keeps to
    the advertised rate and burst and is never flood-closed, where a version-1 client (that
    cannot know the limit) is."""
    async with ReferenceServer(config(max_frames_per_s=20.0, frame_burst=5)) as server:
        for versions, flooded in [((2,), False), ((1,), True)]:
            client = AsyncClient(server.url, token(), versions=versions)
            await client.connect()
            await client.drop()
            ids = [await client.send_user_message(f"queued {n}") for n in range(12)]
            await client.resume()
            if flooded:
                await client.wait_for(
                    lambda c=client: CloseCode.POLICY_VIOLATION in c.close_codes or None,  # type: ignore[misc]
                    5,
                    "the flood close",
                )
            else:
                await client.reply_to(ids[-1], timeout=5)
                assert {} == client.protocol.unacked
                assert CloseCode.POLICY_VIOLATION not in client.close_codes
            await client.drop()


@pytest.mark.asyncio
async def test_a_client_acks_before_half_the_replay_buffer_is_unacknowledged() -> None:
    """§5.1: with replay_buffer_max 2, a client that would batch 32 deliveries (and wait 30 s)
    acks every delivery instead, so the server's buffer never overflows while attached."""
    from reference_server.protocol import SessionConfig
    from reference_server.protocol.messages import Limits

    limits = Limits(max_frame_bytes=65536, replay_buffer_max=2)
    async with ReferenceServer(config(session=SessionConfig(limits=limits))) as server:
        client = AsyncClient(server.url, token(), ack_every=32, ack_delay=30.0)
        await client.connect()
        assert 1 == client.effective_ack_every
        reply = await client.chat("what is 6 * 7")
        assert client.protocol.session is not None
        session = server.hosts[client.protocol.session.session_id].session
        await _eventually(lambda: session.acked_seq == len(reply), 5)
        assert () == session.replay_buffer
        await client.drop()


@pytest.mark.asyncio
async def test_a_full_server_answers_hello_with_overloaded_and_keeps_serving_resumes() -> None:
    """§14: at --max-sessions a hello gets rejected overloaded with retry_after_ms and close
    1013; the sessions it holds still resume."""
    async with ReferenceServer(config(max_sessions=1, overload_retry_after_ms=1500)) as server:
        first = AsyncClient(server.url, token())
        await first.connect()
        await first.drop()
        second = AsyncClient(server.url, token("bob"))
        refused = await second.connect()
        assert isinstance(refused, RejectedByServer)
        assert ("overloaded", 1500, False) == (
            refused.reason,
            refused.retry_after_ms,
            refused.final,
        )
        code = await second.wait_for(lambda: second.close_codes[-1:] or None, 5, "close")
        assert [CloseCode.TRY_AGAIN_LATER] == code
        assert isinstance(await first.resume(), Attached)
        await first.drop()
