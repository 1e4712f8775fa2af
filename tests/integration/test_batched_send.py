"""``send_texts`` over a real WebSocket on 127.0.0.1: each frame its own message, one write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from reference_server.batched_send import send_texts

FRAMES = [b'{"type":"reply_chunk","n":%d}' % i for i in range(5)]


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[ClientConnection, asyncio.Queue[Any]]]:
    """A client connected to a server that puts every message it receives on a queue."""
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def handle(ws: ServerConnection) -> None:
        async for message in ws:
            await received.put(message)

    async with serve(handle, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            yield ws, received


@pytest.mark.asyncio
async def test_each_frame_arrives_as_its_own_text_message_in_order(
    pair: tuple[ClientConnection, asyncio.Queue[Any]],
) -> None:
    """Five frames sent together arrive as five text messages, in the order given."""
    ws, received = pair
    await send_texts(ws, FRAMES)
    got = [await asyncio.wait_for(received.get(), 5) for _ in FRAMES]
    assert [f.decode() for f in FRAMES] == got


@pytest.mark.asyncio
async def test_frames_go_out_in_one_write(
    pair: tuple[ClientConnection, asyncio.Queue[Any]],
) -> None:
    """The transport is written once for all the frames (send writes once per frame)."""
    ws, received = pair
    writes: list[bytes] = []
    original = ws.transport.write

    def counting(data: Any) -> None:
        writes.append(bytes(data))
        original(data)

    ws.transport.write = counting  # type: ignore[method-assign]
    try:
        await send_texts(ws, FRAMES)
    finally:
        ws.transport.write = original  # type: ignore[method-assign]
    for _ in FRAMES:
        await asyncio.wait_for(received.get(), 5)
    assert 1 == len(writes)


@pytest.mark.asyncio
async def test_no_frames_sends_nothing_and_one_frame_is_a_plain_send(
    pair: tuple[ClientConnection, asyncio.Queue[Any]],
) -> None:
    """An empty batch writes nothing; a single frame arrives like any message."""
    ws, received = pair
    await send_texts(ws, [])
    await send_texts(ws, FRAMES[:1])
    assert FRAMES[0].decode() == await asyncio.wait_for(received.get(), 5)
    assert received.empty()


@pytest.mark.asyncio
async def test_a_closed_connection_raises_connection_closed(
    pair: tuple[ClientConnection, asyncio.Queue[Any]],
) -> None:
    """After the close, sending raises ConnectionClosed, as send does."""
    ws, _ = pair
    await ws.close()
    with pytest.raises(ConnectionClosed):
        await send_texts(ws, FRAMES)
