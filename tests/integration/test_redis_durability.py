"""A node SIGKILLed mid-conversation comes back on the same Redis with every session intact.

The server runs as a child process on a real redis-server (append-only); it is SIGKILLed at
chosen moments and restarted with the same node id and port, and a real client resumes: same
epoch, a full resume, nothing lost or repeated (docs/cluster.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from reference_server import agent
from reference_server.aio_client import AsyncClient
from reference_server.auth import mint
from reference_server.launcher import ServerProcess
from reference_server.protocol import Attached

from .test_durability import (
    ENV,
    IN_FLIGHT,
    SECRET,
    USER,
    WAIT_S,
    _assert_clean_stream,
    _assert_one_reply,
    _chat_turns,
    _chunks,
    _resume,
)

pytestmark = pytest.mark.slow


def node_args(redis_url: str, node_id: str, *extra: str) -> list[str]:
    """``python -m reference_server`` options of one node on ``redis_url``."""
    return ["--store", redis_url, "--node-id", node_id, "--chunk-delay", "0", *extra]


@pytest_asyncio.fixture
async def node(redis_url: str, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """One node process on the test's Redis."""
    args = node_args(redis_url, "n1")
    async with ServerProcess(args, env=ENV, log_path=tmp_path / "n1.log") as server:
        yield server


@pytest_asyncio.fixture
async def client(node: ServerProcess) -> AsyncIterator[AsyncClient]:
    """A client of ``node`` with a new session."""
    client = AsyncClient(node.url, mint(USER, SECRET))
    try:
        attached = await client.connect(timeout=WAIT_S)
        assert isinstance(attached, Attached), attached
        yield client
    finally:
        await client.drop()


@pytest.mark.asyncio
async def test_sigkilled_node_restarts_on_redis_with_history_and_context(
    node: ServerProcess, client: AsyncClient
) -> None:
    """A node SIGKILLed with a message in flight comes back on the same Redis: the resume is
    full on the same epoch, history and context are as before, the message is answered once."""
    welcome = next(e for e in client.events if isinstance(e, Attached))
    context = await _chat_turns(client, agent.new_context())
    history_before = await client.history(timeout=WAIT_S)
    message_id = await client.send_user_message(IN_FLIGHT)

    await node.restart()  # SIGKILL
    await client.drop()
    await _resume(client, welcome.epoch)

    await client.reply_to(message_id, timeout=WAIT_S)
    turn = agent.respond(context, message_id, IN_FLIGHT)
    _assert_one_reply(client, message_id, turn)
    history_after = await client.history(timeout=WAIT_S)
    assert list(history_before.entries) == list(history_after.entries)[: history_before.total]
    assert history_before.total + 2 == history_after.total
    assert turn.context == (await client.agent_context(timeout=WAIT_S)).context
    _assert_clean_stream(client)


@pytest.mark.asyncio
async def test_sigkill_mid_stream_replays_the_rest_of_the_reply_from_redis(
    redis_url: str, tmp_path: Path
) -> None:
    """A node SIGKILLed between two chunks of a reply replays, from Redis, the chunks the
    client lacks: the reply arrives whole and each chunk once."""
    args = [*node_args(redis_url, "n1")[:-2], "--chunk-delay", "0.5"]
    async with ServerProcess(args, env=ENV, log_path=tmp_path / "n1.log") as server:
        client = AsyncClient(server.url, mint(USER, SECRET))
        try:
            welcome = await client.connect(timeout=WAIT_S)
            assert isinstance(welcome, Attached)
            text = "my name is Ada; set x = 4; what is x * 2"
            message_id = await client.send_user_message(text)
            await client.wait_for(lambda: _chunks(client, message_id) or None, WAIT_S, "a chunk")
            await server.restart()
            assert 1 == len(_chunks(client, message_id))

            attached = await _resume(client, welcome.epoch)

            assert 0 == attached.resent
            await client.reply_to(message_id, timeout=WAIT_S)
            _assert_one_reply(
                client, message_id, agent.respond(agent.new_context(), message_id, text)
            )
            _assert_clean_stream(client)
        finally:
            await client.drop()
