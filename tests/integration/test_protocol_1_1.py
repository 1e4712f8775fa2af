"""Rules decided by revision 1.1 of docs/protocol.md, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from reference_server import admin
from reference_server.aio_client import AsyncClient, HandshakeRefusedError
from reference_server.app import ReferenceServer
from reference_server.protocol import Attached, codec
from reference_server.protocol.messages import (
    Ack,
    ConversationHistory,
    Error,
    Rejected,
    ReplyChunk,
    ServerMessage,
    Welcome,
)

from .conftest import ADMIN, config, token

AUTH = {"Authorization": f"Bearer {token()}"}


async def _frames(ws: ClientConnection, until: type, timeout: float = 5) -> list[ServerMessage]:
    """Read and decode frames up to and including the first of type ``until``."""
    seen: list[ServerMessage] = []
    async with asyncio.timeout(timeout):
        while not seen or not isinstance(seen[-1], until):
            seen.append(codec.decode_server(await ws.recv(decode=False)))
    return seen


async def _drain(ws: ClientConnection, timeout: float = 5) -> list[ServerMessage]:
    """Read until the server closes; return what it sent."""
    seen: list[ServerMessage] = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                seen.append(codec.decode_server(await ws.recv(decode=False)))
    return seen


@pytest.mark.asyncio
async def test_frames_sent_before_welcome_are_processed_after_it(server: ReferenceServer) -> None:
    """§7.1: a server cannot tell frames sent before welcome from frames sent after it: a
    request pipelined behind hello is answered, after the welcome."""
    async with connect(server.url, additional_headers=AUTH, proxy=None) as ws:
        await ws.send('{"type":"hello","versions":[2]}')
        await ws.send('{"type":"user_message","id":"u1","seq":1,"text":"my name is Ada"}')
        frames = await _frames(ws, ReplyChunk)
    assert isinstance(frames[0], Welcome)
    assert "u1" == frames[-1].in_reply_to  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_frames_pipelined_behind_a_rejected_resume_are_discarded(
    server: ReferenceServer,
) -> None:
    """§7.2: after rejected the server reads nothing more as protocol: a request pipelined
    behind a refused resume is never processed."""
    async with connect(server.url, additional_headers=AUTH, proxy=None) as ws:
        await ws.send('{"type":"hello","versions":[2]}')
        welcome = codec.decode_server(await ws.recv(decode=False))
    assert isinstance(welcome, Welcome)
    async with connect(server.url, additional_headers=AUTH, proxy=None) as ws:
        await ws.send(
            f'{{"type":"resume","versions":[2],"session_id":"{welcome.session_id}",'
            f'"resume_token":"not-the-token","epoch":"{welcome.epoch}","last_seq":0}}'
        )
        await ws.send('{"type":"user_message","id":"u1","seq":1,"text":"set x = 1"}')
        frames = await _drain(ws)
    assert ["token_invalid"] == [f.reason for f in frames if isinstance(f, Rejected)]
    assert 0 == server.store.history(welcome.session_id, before=None, limit=0).total


@pytest.mark.asyncio
async def test_the_ack_of_a_request_follows_the_numbered_answer_it_produced(
    server: ReferenceServer,
) -> None:
    """§6: the reference acks once processing produced the answer: the ack follows the final
    chunk, in the same batch. Clients must not rely on the order either way."""
    async with connect(server.url, additional_headers=AUTH, proxy=None) as ws:
        await ws.send('{"type":"hello","versions":[2]}')
        await ws.recv()
        await ws.send('{"type":"user_message","id":"u1","seq":1,"text":"what is 6 * 7"}')
        frames = await _frames(ws, Ack)
    chunks = [f for f in frames if isinstance(f, ReplyChunk)]
    assert chunks[-1].final
    assert Ack(seq=1) == frames[-1]


@pytest.mark.asyncio
async def test_an_ack_above_the_last_seq_numbered_is_ignored_with_an_error(
    server: ReferenceServer,
) -> None:
    """§5.1: an ack for a seq never numbered gets unnumbered invalid_message, and the
    connection carries on."""
    async with connect(server.url, additional_headers=AUTH, proxy=None) as ws:
        await ws.send('{"type":"hello","versions":[2]}')
        await ws.recv()
        await ws.send('{"type":"ack","seq":99}')
        error = codec.decode_server(await ws.recv(decode=False))
        await ws.send('{"type":"ping","nonce":3}')
        pong = await asyncio.wait_for(ws.recv(decode=False), 5)
    assert ("invalid_message", None) == (getattr(error, "code", None), getattr(error, "seq", 0))
    assert b'{"type":"pong","nonce":3}' == pong


@pytest.mark.asyncio
async def test_history_limits_out_of_range_are_invalid_and_consume_no_seq(
    server: ReferenceServer,
) -> None:
    """§11.2: limit 501 is invalid_message (unnumbered; seq 1 stays unused, so the next
    request may take it); limit 0 is a valid, empty page with the true total."""
    async with connect(server.url, additional_headers=AUTH, proxy=None) as ws:
        await ws.send('{"type":"hello","versions":[2]}')
        await ws.recv()
        await ws.send('{"type":"get_conversation_history","id":"h1","seq":1,"limit":501}')
        error = codec.decode_server(await ws.recv(decode=False))
        await ws.send('{"type":"get_conversation_history","id":"h2","seq":1,"limit":0}')
        frames = await _frames(ws, ConversationHistory)
    assert isinstance(error, Error)
    assert ("invalid_message", None) == (error.code, error.seq)
    page = frames[-1]
    assert isinstance(page, ConversationHistory)
    assert ((), 0, None) == (page.entries, page.total, page.next_before)


@pytest.mark.asyncio
async def test_no_extension_or_subprotocol_is_negotiated(server: ReferenceServer) -> None:
    """§1.1: the reference accepts offers of permessage-deflate and of subprotocols and
    selects neither; frames are measured as sent, uncompressed."""
    async with connect(
        server.url,
        additional_headers=AUTH,
        proxy=None,
        compression="deflate",
        subprotocols=["chat.v1"],  # type: ignore[list-item]
    ) as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        assert ws.subprotocol is None
        await ws.send('{"type":"hello","versions":[2]}')
        assert isinstance(codec.decode_server(await ws.recv(decode=False)), Welcome)


@pytest.mark.asyncio
async def test_an_expired_credential_at_resume_is_not_final_for_the_session(
    server: ReferenceServer,
) -> None:
    """§15: HTTP 401 at a resume's handshake says nothing about the session: with a new
    credential the same session resumes, full."""
    client = AsyncClient(server.url, token())
    await client.connect()
    await client.chat("my name is Ada")
    await client.drop()
    client.token = token(ttl_s=-5)
    with pytest.raises(HandshakeRefusedError) as refused:
        await client.resume()
    assert 401 == refused.value.status
    client.token = token()
    attached = await client.resume()
    assert isinstance(attached, Attached)
    assert "full" == attached.outcome
    await client.drop()


@pytest.mark.asyncio
async def test_a_credential_that_expires_while_attached_does_not_end_the_connection(
    server: ReferenceServer,
) -> None:
    """§15: the credential is checked at each handshake only: past its expiry the attached
    connection goes on; the next resume needs a valid credential."""
    client = AsyncClient(server.url, token(ttl_s=5))
    await client.connect()
    await admin.advance_clock(server.url, ADMIN, 20)  # the credential is 15 s past expiry
    assert await client.chat("still here?")
    await client.drop()
    with pytest.raises(HandshakeRefusedError):
        await client.resume()


@pytest.mark.asyncio
async def test_a_virtual_clock_jumps_and_also_runs_at_real_rate() -> None:
    """§4.4: virtual_clock means the server's clock jumps on the admin channel's command and
    runs at real rate in between; gaps are measured on it."""
    async with ReferenceServer(config()) as server:
        client = AsyncClient(server.url, token())
        await client.connect()
        assert client.protocol.session is not None
        assert "virtual_clock" in client.protocol.session.capabilities
        await client.drop()
        started = time.monotonic()
        await asyncio.sleep(0.3)
        await admin.advance_clock(server.url, ADMIN, 10)
        attached = await client.resume()
        real = time.monotonic() - started
        assert isinstance(attached, Attached)
        assert 10 + 0.3 <= attached.gap_s <= 10 + real + 0.05
        await client.drop()
