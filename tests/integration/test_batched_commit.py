"""Frames that arrive together are answered together: one store commit, one write.

A client sends its next request and the ack of the last reply in one socket write (as
``AsyncClient`` and the throughput benchmark do). The reference server answers both before it
commits and sends: one commit of the session's state with both changes in it, stored before
the reply goes out. Over a real WebSocket on 127.0.0.1, with the real memory store (a spy
counts its commits and calls through) and with a real redis-server (one node; a spy counts the
commits queued to the node's writer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from reference_server.app import ReferenceServer
from reference_server.batched_send import send_texts
from reference_server.cluster.writer import CommitOp, Op
from reference_server.connection import receive_queue
from reference_server.protocol import Attached, ClientProtocol, Delivered, codec
from reference_server.protocol.messages import AgentContext, ConversationHistory, ReplyChunk
from reference_server.store import Change

from .conftest import config, token


@pytest.mark.asyncio
async def test_the_receive_queue_holds_the_messages_one_read_brought() -> None:
    """Against the installed websockets: a whole message waits while one is left, none after."""
    seen: asyncio.Queue[list[bool]] = asyncio.Queue()

    async def handle(ws: ServerConnection) -> None:
        await asyncio.sleep(0.2)  # both messages are read meanwhile
        queue = receive_queue(ws)
        states = [bool(queue) and queue[0].fin]
        for _ in range(2):
            await ws.recv()
            states.append(bool(queue) and queue[0].fin)
        await seen.put(states)
        await ws.wait_closed()

    async with serve(handle, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            await send_texts(ws, [b'{"n":1}', b'{"n":2}'])
            states = await asyncio.wait_for(seen.get(), 5)
    assert states == [True, True, False]


class Commits(list[Change]):
    """The changes stored, in order; ``grew`` is set at each."""

    def __init__(self) -> None:
        super().__init__()
        self.grew = asyncio.Event()

    def add(self, change: Change) -> None:
        self.append(change)
        self.grew.set()


@pytest_asyncio.fixture(params=["memory", "redis"])
async def counted(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[ReferenceServer, Commits]]:
    """A reference server that records every change it stores: on the memory store, each
    ``commit``; on Redis (one node), each commit queued to the writer."""
    commits = Commits()
    if request.param == "memory":
        async with ReferenceServer(config()) as server:
            commit = server.store.commit

            def spy(change: Change) -> None:
                commits.add(change)
                commit(change)

            server.store.commit = spy  # type: ignore[method-assign]
            yield server, commits
        return
    redis_url = request.getfixturevalue("redis_url")
    async with ReferenceServer(config(store=redis_url, node_id="n1")) as server:
        assert server.cluster is not None
        writer = server.cluster.registry.writer
        submit = writer.submit

        def spy_op(op: Op) -> None:
            if isinstance(op, CommitOp):
                commits.add(op.change)
            submit(op)

        writer.submit = spy_op  # type: ignore[method-assign]
        yield server, commits


async def _open(server: ReferenceServer) -> tuple[ClientConnection, ClientProtocol]:
    ws = await connect(
        server.url, additional_headers={"Authorization": f"Bearer {token()}"}, compression=None
    )
    protocol = ClientProtocol()
    protocol.hello()
    await send_texts(ws, protocol.data_to_send())
    async with asyncio.timeout(5):
        while not any(isinstance(e, Attached) for e in protocol.receive(await ws.recv())):
            pass
    return ws, protocol


async def _turn_unacked(ws: ClientConnection, protocol: ClientProtocol) -> None:
    """One turn, its reply read and not acknowledged yet."""
    request = protocol.send_user_message("hello")
    await send_texts(ws, protocol.data_to_send(include_ack=False))
    await _reply(ws, protocol, request.id)


async def _reply(ws: ClientConnection, protocol: ClientProtocol, request_id: str) -> None:
    """Read until the final chunk of ``request_id`` and the ack of its request."""
    final = acked = False
    async with asyncio.timeout(5):
        while not (final and acked):
            for event in protocol.receive(await ws.recv()):
                if isinstance(event, Delivered) and isinstance(event.message, ReplyChunk):
                    final = final or (
                        event.message.in_reply_to == request_id and event.message.final
                    )
                acked = acked or request_id not in {r.id for r in protocol.unacked.values()}


async def _held(server: ReferenceServer, session_id: str) -> Any:
    """The session as its store holds it (on Redis, once the writer has stored it)."""
    if server.cluster is None:
        sessions = server.store.load_sessions()
    else:
        await server.cluster.registry.writer.drain(timeout=5)
        sessions = await server.cluster.registry.redis.load_sessions()
    [held] = [s for s in sessions if s.snapshot.session_id == session_id]
    return held


@pytest.mark.asyncio
async def test_a_request_and_the_ack_sent_with_it_are_one_commit(
    counted: tuple[ReferenceServer, Commits],
) -> None:
    server, commits = counted
    ws, protocol = await _open(server)
    assert protocol.session is not None
    try:
        await _turn_unacked(ws, protocol)
        acked = protocol.last_seq
        before = len(commits)
        second = protocol.send_user_message("my name is Ada")
        await send_texts(ws, protocol.data_to_send())  # the request, then the ack: one write
        await _reply(ws, protocol, second.id)
        batch = commits[before:]
        assert len(batch) == 1, batch
        [change] = batch
        # The one commit holds both: the ack's trimmed replay buffer and the new turn.
        assert change.snapshot.acked_seq == acked
        assert [seq for seq, _ in change.replay] == list(range(acked + 1, protocol.last_seq + 1))
        assert change.new_request_ids == ((second.id, second.seq),)
        assert [e.role for e in change.new_history] == ["user", "agent"]
        assert change.new_history[0].text == "my name is Ada"
        held = await _held(server, protocol.session.session_id)
        assert held.snapshot.acked_seq == acked
        assert held.request_ids[-1] == (second.id, second.seq)
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_an_ack_on_its_own_is_committed_on_its_own(
    counted: tuple[ReferenceServer, Commits],
) -> None:
    """The control case: an ack that arrives alone is stored at once (it is not held back
    for a frame that may never come)."""
    server, commits = counted
    ws, protocol = await _open(server)
    assert protocol.session is not None
    try:
        await _turn_unacked(ws, protocol)
        before = len(commits)
        await send_texts(ws, protocol.data_to_send())  # the ack alone
        async with asyncio.timeout(5):  # nothing else is sent: the ack is not held back
            while len(commits) == before:
                await commits.grew.wait()
                commits.grew.clear()
        assert len(commits) == before + 1
        assert commits[-1].snapshot.acked_seq == protocol.last_seq
        assert commits[-1].replay == ()
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_a_read_in_the_same_write_as_a_turn_sees_the_turn(
    counted: tuple[ReferenceServer, Commits],
) -> None:
    """A turn, then a history page and the agent context, in one write: the answers are read
    from the store after the turn was stored (§11.2, §11.3), as if each frame came alone."""
    server, _ = counted
    ws, protocol = await _open(server)
    try:
        protocol.send_user_message("my name is Ada")
        protocol.request_history()
        protocol.request_agent_context()
        await send_texts(ws, protocol.data_to_send())
        got: dict[type, Any] = {}
        async with asyncio.timeout(5):
            while len(got) < 2:
                for event in protocol.receive(await ws.recv()):
                    if isinstance(event, Delivered) and isinstance(
                        event.message, ConversationHistory | AgentContext
                    ):
                        got[type(event.message)] = event.message
        assert got[ConversationHistory].total == 2
        assert got[ConversationHistory].entries[0].text == "my name is Ada"
        assert got[AgentContext].context.memory == {"name": "Ada"}
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_a_bye_in_the_same_write_as_a_turn_comes_after_its_reply(
    counted: tuple[ReferenceServer, Commits],
) -> None:
    """A turn and a bye in one write: the reply goes out before the bye ends the session."""
    server, _ = counted
    if server.cluster is not None:
        # On Redis the reply is held until its commit is stored, and the bye does not wait
        # for it (§7.4 abandons what is unacknowledged); so it was before staging too.
        pytest.skip("a node holds the reply until Redis stores it; the bye does not wait")
    ws, protocol = await _open(server)
    try:
        request = protocol.send_user_message("hello")
        protocol.bye()  # the client is closed now: the frames are decoded here
        await send_texts(ws, protocol.data_to_send())
        received = []
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    received.append(codec.decode_server(await ws.recv()))
        chunks = [m for m in received if isinstance(m, ReplyChunk)]
        assert chunks, received
        assert chunks[-1].final
        assert {c.in_reply_to for c in chunks} == {request.id}
        assert ws.close_code == 1000
    finally:
        await ws.close()
