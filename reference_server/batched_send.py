"""Send several text messages in one socket write.

websockets' ``Connection.send`` writes each message with a ``transport.write`` of its own: a
reply of four chunks and an ack is five system calls and five TCP segments the peer wakes up
for. The profiles of the throughput and storm benchmarks (docs/performance.md, profile) put
``_SelectorSocketTransport.write`` first in the server's own time and the writes under
``ConnectionLoop._flush`` at 45% of its busy samples. ``send_texts`` frames every message
under one ``send_context`` (the same state check, flow control and close handling as ``send``)
and writes their bytes at once. Each stays a WebSocket message of its own: the peer sees
exactly what ``send`` would have sent, in the same order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from websockets.asyncio.connection import Connection


async def send_texts(ws: Connection, frames: Sequence[bytes]) -> None:
    """Send each of ``frames`` as one text message, in order, in one write."""
    if len(frames) <= 1:
        for frame in frames:
            await ws.send(frame, text=True)
        return
    # As Connection.send does: no message may go between the fragments of another (none of
    # ours is fragmented, but a caller's might be).
    while ws.send_in_progress is not None:
        await asyncio.shield(ws.send_in_progress)
    async with ws.send_context():
        protocol = ws.protocol
        for frame in frames:
            protocol.send_text(frame)
        data = protocol.data_to_send()
        if all(data):
            ws.transport.write(b"".join(data))
        else:  # an empty item is a half-close (RFC 6455 §7.1.1): keep every write apart
            for item in data:
                if item:
                    ws.transport.write(item)
                elif ws.transport.can_write_eof():
                    ws.transport.write_eof()
