"""Last words on one WebSocket connection: an error, a rejection, a closing, then the close.

Every helper here swallows ``ConnectionClosed``: the peer may be gone already, and a close to
a closed connection is not an error worth more than silence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from reference_server.batched_send import send_texts
from reference_server.metrics import Metrics
from reference_server.protocol import codec
from reference_server.protocol.messages import Closing, Error, Rejected

# How long a closing connection keeps reading the peer's frames before giving up.
CLOSE_DRAIN_S = 2.0


async def send_error(
    ws: ServerConnection, code: str, message: str, retry_after_ms: int | None = None
) -> None:
    """Send an unnumbered error (§12); the connection stays open."""
    error = Error(code=code, message=message[:500], retry_after_ms=retry_after_ms)
    await ws.send(codec.encode(error), text=True)


async def fail(
    ws: ServerConnection,
    metrics: Metrics,
    code: str,
    message: str,
    close_code: int,
    retry_after_ms: int | None = None,
) -> None:
    """Send an unnumbered error, then close with ``close_code`` (§12)."""
    metrics.errors.labels(code).inc()
    with contextlib.suppress(ConnectionClosed):
        await send_error(ws, code, message, retry_after_ms)
        await close_draining(ws, close_code, code)


async def reject(ws: ServerConnection, rejected: Rejected, close_code: int) -> None:
    """Refuse a hello or resume: ``rejected``, then the close code of its reason (§4.5)."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(codec.encode(rejected), text=True)
        await close_draining(ws, close_code, rejected.reason)


async def close_with(ws: ServerConnection, closing: Closing) -> None:
    """Tell an attached connection why it is closed, then close it (§7.3)."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(codec.encode(closing), text=True)
        await ws.close(closing.code, closing.reason)  # its own reader keeps draining


async def answer_then(
    ws: ServerConnection,
    unsent: Sequence[bytes],
    closer: Coroutine[Any, Any, None] | None,
) -> None:
    """Send a displaced connection the answer it was given and never got, then end it.

    A hello or resume accepted a moment before another connection took the session over (or
    revoked it) has its ``welcome`` or ``resumed`` (and replay) queued but maybe not yet
    written. One server deciding them in order would have sent that answer first (§7.5), so
    it goes out before the ``closing``; ``closer`` is how the connection ends (None: left
    open, a planted fault).
    """
    try:
        if unsent:
            with contextlib.suppress(ConnectionClosed):
                await send_texts(ws, unsent)
    finally:
        if closer is not None:
            await closer


async def close_draining(ws: ServerConnection, code: int, reason: str) -> None:
    """Close, reading (and dropping) what the peer still sends meanwhile: a peer that keeps
    sending would otherwise fill the receive queue, hide its close frame, and hold the
    connection for the whole close timeout."""
    closing = asyncio.ensure_future(ws.close(code, reason))
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(CLOSE_DRAIN_S):
            while not closing.done():
                await ws.recv()
    await closing


def peer(connection: ServerConnection) -> str:
    """The socket peer's address, as text."""
    address = connection.remote_address
    return str(address[0]) if address else "unknown"
