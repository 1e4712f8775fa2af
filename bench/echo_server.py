"""A bare ``websockets`` server, the baseline of the throughput and resume benchmarks.

``python -m bench.echo_server [--frames N] [--size BYTES]`` answers every text frame with
``N`` text frames of ``BYTES`` bytes each: no protocol, no sequence numbers, no acks, no store.
Like the reference server, its first stdout line is ``listening on ws://HOST:PORT/`` and it
stops on SIGTERM or SIGINT. ``EchoServerProcess`` runs it as a child process, the same way
``reference_server.launcher.ServerProcess`` runs the reference server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from reference_server.launcher import READY_PREFIX, ServerProcess

ROOT = Path(__file__).resolve().parents[1]


def payload(size: int) -> bytes:
    """A JSON text frame of exactly ``size`` bytes (at least 16), shaped like a reply chunk."""
    head, tail = b'{"type":"echo","text":"', b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


async def _serve(host: str, port: int, frames: int, size: int, open_timeout: float) -> None:
    answer = payload(size)

    async def handle(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                for _ in range(frames):
                    await ws.send(answer, text=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The same connection options as the reference server: no compression, no WebSocket pings.
    # The same listen backlog as the reference server, so storms compare like with like.
    async with serve(
        handle,
        host,
        port,
        ping_interval=None,
        compression=None,
        backlog=4096,
        open_timeout=open_timeout,
    ) as server:
        bound = server.sockets[0].getsockname()
        print(f"{READY_PREFIX}ws://{bound[0]}:{bound[1]}/", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench.echo_server``."""
    parser = argparse.ArgumentParser(prog="python -m bench.echo_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--frames", type=int, default=1, help="frames sent per frame received")
    parser.add_argument("--size", type=int, default=100, help="bytes per frame sent")
    parser.add_argument(
        "--open-timeout", type=float, default=10.0, help="handshake timeout, s (default 10)"
    )
    args = parser.parse_args(argv)
    if args.frames < 1 or args.size < 1:
        parser.error("--frames and --size must be positive")
    asyncio.run(_serve(args.host, args.port, args.frames, args.size, args.open_timeout))
    return 0


class EchoServerProcess(ServerProcess):
    """``async with EchoServerProcess(frames=5, size=90) as echo: echo.url``: the launcher of
    the reference server, pointed at this module."""

    def __init__(
        self, *, frames: int, size: int, start_timeout: float = 15.0, open_timeout: float = 10.0
    ) -> None:
        super().__init__(
            ["--frames", str(frames), "--size", str(size), "--open-timeout", f"{open_timeout:g}"],
            module="bench.echo_server",
            cwd=ROOT,
            start_timeout=start_timeout,
        )


if __name__ == "__main__":
    raise SystemExit(main())
