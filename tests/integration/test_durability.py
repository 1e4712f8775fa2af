"""A SIGKILLed server on the SQLite store comes back with every session intact (docs §8.3).

The server runs as a child process (``ServerProcess``); it is killed with SIGKILL at chosen
moments of a conversation and restarted on the same port, and a real client resumes. A memory
store forgets its sessions on a restart, and says so with a typed rejection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest
import pytest_asyncio

from reference_server import agent
from reference_server.__main__ import SECRET_ENV
from reference_server.aio_client import AsyncClient
from reference_server.auth import mint
from reference_server.launcher import ServerProcess
from reference_server.protocol import (
    Attached,
    ClientState,
    CloseCode,
    DuplicateDelivery,
    RejectedByServer,
    SequenceGap,
    UnnumberedError,
)
from reference_server.protocol.messages import (
    AgentContextData,
    HistoryEntry,
    ReplyChunk,
    ServerSequenced,
    ToolCall,
)

pytestmark = pytest.mark.slow

SECRET = "durability-tests-secret-0123456789abcdef"  # HS256 wants at least 32 bytes
ENV = {SECRET_ENV: SECRET}
USER = "ada"
TURNS = ("my name is Ada", "set x = 4", "what is x * 2")
IN_FLIGHT = "let y be 7; what is x + y"
FULL_WINDOW_S = 30.0  # the server's default full replay window
WAIT_S = 10.0
IDLE_BEFORE_KILL_S = 1.5

KillMoment = Literal["race", "unread", "processed"]


@pytest_asyncio.fixture
async def sqlite_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """A server process on a SQLite file, chunks sent without delay."""
    args = ["--store", f"sqlite:{tmp_path / 's.db'}", "--chunk-delay", "0"]
    async with ServerProcess(args, env=ENV, log_path=tmp_path / "server.log") as server:
        yield server


@pytest_asyncio.fixture
async def memory_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """A server process on the memory store, chunks sent without delay."""
    args = ["--store", "memory", "--chunk-delay", "0"]
    async with ServerProcess(args, env=ENV, log_path=tmp_path / "server.log") as server:
        yield server


@pytest_asyncio.fixture
async def client(sqlite_server: ServerProcess) -> AsyncIterator[AsyncClient]:
    """A client of ``sqlite_server`` with a new session, dropped at the end."""
    async with _client(sqlite_server) as opened:
        yield opened


@contextlib.asynccontextmanager
async def _client(server: ServerProcess) -> AsyncIterator[AsyncClient]:
    """A client of ``server`` connected to a new session, dropped on the way out."""
    client = AsyncClient(server.url, mint(USER, SECRET))
    try:
        attached = await client.connect(timeout=WAIT_S)
        assert isinstance(attached, Attached), attached
        assert "new" == attached.outcome
        yield client
    finally:
        await client.drop()


# --- helpers -------------------------------------------------------------------------------


def _seqs(client: AsyncClient) -> list[int]:
    return [message.seq for message in client.delivered if message.seq is not None]


def _reply(client: AsyncClient, message_id: str) -> list[ServerSequenced]:
    return [m for m in client.delivered if getattr(m, "in_reply_to", None) == message_id]


def _chunks(client: AsyncClient, message_id: str) -> list[ReplyChunk]:
    return [m for m in _reply(client, message_id) if isinstance(m, ReplyChunk)]


def _assert_clean_stream(client: AsyncClient) -> None:
    """Every numbered message delivered once, in order, from 1, and nothing went wrong."""
    seqs = _seqs(client)
    assert list(range(1, len(seqs) + 1)) == seqs
    assert [] == [e for e in client.events if isinstance(e, DuplicateDelivery | SequenceGap)]
    assert [] == [e for e in client.events if isinstance(e, UnnumberedError)]
    assert [] == client.errors


def _assert_one_reply(client: AsyncClient, message_id: str, turn: agent.AgentTurn) -> None:
    """The reply to ``message_id`` arrived exactly once, whole, and is the agent's turn."""
    chunks = _chunks(client, message_id)
    assert list(range(len(turn.chunks))) == [c.chunk_index for c in chunks]
    assert [False] * (len(chunks) - 1) + [True] == [c.final for c in chunks]
    assert turn.reply == "".join(c.text for c in chunks)
    calls = [m.call for m in _reply(client, message_id) if isinstance(m, ToolCall)]
    assert list(turn.tool_calls) == calls


def _turn_entries(start: int, message_id: str, text: str, reply: str) -> list[HistoryEntry]:
    return [
        HistoryEntry(index=start, role="user", message_id=message_id, text=text),
        HistoryEntry(index=start + 1, role="agent", message_id=message_id, text=reply),
    ]


async def _chat_turns(client: AsyncClient, context: AgentContextData) -> AgentContextData:
    """Chat every turn of TURNS, checking each reply against the agent; return the context."""
    for text in TURNS:
        message_id = await client.send_user_message(text)
        await client.reply_to(message_id, timeout=WAIT_S)
        turn = agent.respond(context, message_id, text)
        _assert_one_reply(client, message_id, turn)
        context = turn.context
    return context


async def _resume(client: AsyncClient, epoch: str) -> Attached:
    """Resume after the restart and check it was a full resume of the same stream."""
    attached = await client.resume(timeout=WAIT_S)
    assert isinstance(attached, Attached), attached
    assert "full" == attached.outcome
    assert epoch == attached.epoch
    assert () == attached.warnings
    assert attached.missed is None
    assert attached.gap_s < FULL_WINDOW_S
    return attached


async def _processed(db_path: Path, message_id: str, timeout: float) -> None:
    """Wait until the server has committed ``message_id`` as processed to the SQLite file."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        async with asyncio.timeout(timeout):
            while True:  # another process writes the file: nothing here to wait on but time
                if db.execute("SELECT 1 FROM request_ids WHERE id = ?", (message_id,)).fetchone():
                    return
                await asyncio.sleep(0.01)
    finally:
        db.close()


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sigkill_right_after_a_reply_resumes_fully_with_history_and_context_intact(
    sqlite_server: ServerProcess, client: AsyncClient
) -> None:
    """A server SIGKILLed right after a reply comes back with the same epoch, and a full
    resume loses and repeats nothing: history and agent context equal those before the kill."""
    welcome = next(e for e in client.events if isinstance(e, Attached))
    context = await _chat_turns(client, agent.new_context())
    history_before = await client.history(timeout=WAIT_S)
    context_before = await client.agent_context(timeout=WAIT_S)
    assert context == context_before.context
    delivered_before = list(client.delivered)

    await sqlite_server.restart()  # SIGKILL right after the agent_context reply
    attached = await _resume(client, welcome.epoch)

    assert welcome.session_id == attached.session_id
    assert 0 == attached.resent
    history_after = await client.history(timeout=WAIT_S)
    context_after = await client.agent_context(timeout=WAIT_S)
    assert history_before.entries == history_after.entries
    assert 2 * len(TURNS) == history_after.total
    assert context_before.context == context_after.context
    assert delivered_before == client.delivered[: len(delivered_before)]

    # The conversation goes on from where it was: x is still 4.
    message_id = await client.send_user_message("what is x * 2")
    await client.reply_to(message_id, timeout=WAIT_S)
    _assert_one_reply(client, message_id, agent.respond(context, message_id, "what is x * 2"))
    assert 1 == sqlite_server.restarts
    _assert_clean_stream(client)


@pytest.mark.asyncio
@pytest.mark.parametrize("moment", ["race", "unread", "processed"])
async def test_sigkill_with_a_message_in_flight_answers_it_exactly_once(
    sqlite_server: ServerProcess, client: AsyncClient, tmp_path: Path, moment: KillMoment
) -> None:
    """A message in flight when the server is SIGKILLed is answered exactly once after the
    resume, whether the server never read it, had processed it, or either (a race)."""
    welcome = next(e for e in client.events if isinstance(e, Attached))
    await _chat_turns(client, agent.new_context())
    history_before = await client.history(timeout=WAIT_S)
    context_before = await client.agent_context(timeout=WAIT_S)
    pid = sqlite_server.pid
    assert pid is not None

    if moment == "unread":
        # Stopped, the server cannot read the frame before the SIGKILL reaches it.
        os.kill(pid, signal.SIGSTOP)
        message_id = await client.send_user_message(IN_FLIGHT)
    elif moment == "processed":
        # The client reads nothing more, so the reply is lost with the connection.
        assert client.ws is not None
        client.ws.transport.pause_reading()
        message_id = await client.send_user_message(IN_FLIGHT)
        await _processed(tmp_path / "s.db", message_id, WAIT_S)
    else:
        message_id = await client.send_user_message(IN_FLIGHT)
    await sqlite_server.restart()
    await client.drop()
    attached = await _resume(client, welcome.epoch)

    if moment == "unread":
        assert 1 == attached.resent
    elif moment == "processed":
        assert 0 == attached.resent
        assert 0 < attached.replay_count
    await client.reply_to(message_id, timeout=WAIT_S)
    turn = agent.respond(context_before.context, message_id, IN_FLIGHT)
    _assert_one_reply(client, message_id, turn)

    history_after = await client.history(timeout=WAIT_S)
    context_after = await client.agent_context(timeout=WAIT_S)
    start = history_before.total
    expected = [
        *history_before.entries,
        *_turn_entries(start, message_id, IN_FLIGHT, turn.reply),
    ]
    assert expected == list(history_after.entries)
    assert turn.context == context_after.context
    assert 11 == int(turn.tool_calls[-1].result)  # x + y with x = 4, y = 7
    _assert_clean_stream(client)


@pytest.mark.asyncio
async def test_sigkill_mid_stream_replays_the_rest_of_the_reply(tmp_path: Path) -> None:
    """A server SIGKILLed between two chunks of a streamed reply replays the chunks the client
    lacks after the resume, so the reply arrives whole and each chunk once."""
    args = ["--store", f"sqlite:{tmp_path / 's.db'}", "--chunk-delay", "0.5"]
    async with (
        ServerProcess(args, env=ENV, log_path=tmp_path / "server.log") as server,
        _client(server) as client,
    ):
        welcome = next(e for e in client.events if isinstance(e, Attached))
        text = "my name is Ada; set x = 4; what is x * 2"
        message_id = await client.send_user_message(text)
        await client.wait_for(lambda: _chunks(client, message_id) or None, WAIT_S, "a chunk")
        await server.restart()
        assert 1 == len(_chunks(client, message_id))  # killed before the second chunk

        attached = await _resume(client, welcome.epoch)

        assert 0 == attached.resent
        await client.reply_to(message_id, timeout=WAIT_S)
        turn = agent.respond(agent.new_context(), message_id, text)
        _assert_one_reply(client, message_id, turn)
        assert turn.context == (await client.agent_context(timeout=WAIT_S)).context
        _assert_clean_stream(client)


@pytest.mark.asyncio
async def test_two_sigkills_in_one_conversation_keep_one_stream(
    sqlite_server: ServerProcess, client: AsyncClient
) -> None:
    """Two SIGKILLs in one conversation, each with a message in flight, still give one
    unbroken stream: every turn answered once and stored once, in order."""
    welcome = next(e for e in client.events if isinstance(e, Attached))
    context = agent.new_context()
    sent: list[tuple[str, str]] = []
    for round_ in range(2):
        for text in (f"remember that round {round_} is done", f"set r{round_} = {round_}"):
            message_id = await client.send_user_message(text)
            sent.append((message_id, text))
        await sqlite_server.restart()
        await _resume(client, welcome.epoch)
        for message_id, _ in sent[-2:]:
            await client.reply_to(message_id, timeout=WAIT_S)

    entries: list[HistoryEntry] = []
    for message_id, text in sent:
        turn = agent.respond(context, message_id, text)
        _assert_one_reply(client, message_id, turn)
        entries += _turn_entries(len(entries), message_id, text, turn.reply)
        context = turn.context
    history = await client.history(timeout=WAIT_S)
    assert entries == list(history.entries)
    assert context == (await client.agent_context(timeout=WAIT_S)).context
    assert 2 == sqlite_server.restarts
    _assert_clean_stream(client)


@pytest.mark.asyncio
async def test_gap_after_a_sigkill_counts_from_the_restore(
    sqlite_server: ServerProcess, client: AsyncClient
) -> None:
    """A session that was attached when the server was SIGKILLed is detached as of the
    restore (§8): the resume's gap_s counts from the restart, not from the last frame before
    the kill, so idle time before a crash does not eat into the session's windows."""
    welcome = next(e for e in client.events if isinstance(e, Attached))
    await client.chat("my name is Ada", timeout=WAIT_S)
    await asyncio.sleep(IDLE_BEFORE_KILL_S)  # the session's last frame is now this old
    restarting = time.monotonic()

    await sqlite_server.restart()
    attached = await _resume(client, welcome.epoch)

    since_restarting = time.monotonic() - restarting
    assert attached.gap_s <= since_restarting, (attached.gap_s, since_restarting)
    _assert_clean_stream(client)


@pytest.mark.asyncio
async def test_memory_store_restart_rejects_the_resume_as_session_unknown(
    memory_server: ServerProcess,
) -> None:
    """A memory-store server restarted has forgotten the session: the resume is rejected with
    ``session_unknown`` and close code 4004, never answered with a silent new session."""
    async with _client(memory_server) as client:
        await client.chat("my name is Ada", timeout=WAIT_S)
        session = client.protocol.session
        assert session is not None
        await memory_server.restart()
        seen = len(client.events)

        refused = await client.resume(timeout=WAIT_S)

        assert isinstance(refused, RejectedByServer), refused
        assert ("session_unknown", True) == (refused.reason, refused.final)
        assert session.session_id in refused.message
        assert [refused] == client.events[seen:]  # no welcome, no resumed: no new session
        assert ClientState.CLOSED is client.protocol.state
        close_code = await client.wait_for(
            lambda: client.close_codes[-1] if len(client.close_codes) == 2 else None,
            WAIT_S,
            "the close code after the rejection",
        )
        assert CloseCode.SESSION_EXPIRED == close_code
