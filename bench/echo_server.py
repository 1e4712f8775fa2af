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
import sys
from collections.abc import Sequence
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

READY_PREFIX = "listening on "
ROOT = Path(__file__).resolve().parents[1]


def payload(size: int) -> bytes:
    """A JSON text frame of exactly ``size`` bytes (at least 16), shaped like a reply chunk."""
    head, tail = b'{"type":"echo","text":"', b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


async def _serve(host: str, port: int, frames: int, size: int) -> None:
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
        handle, host, port, ping_interval=None, compression=None, backlog=4096
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
    args = parser.parse_args(argv)
    if args.frames < 1 or args.size < 1:
        parser.error("--frames and --size must be positive")
    asyncio.run(_serve(args.host, args.port, args.frames, args.size))
    return 0


class EchoServerProcess:
    """``async with EchoServerProcess(frames=5, size=90) as echo: echo.url``; every wait is
    bounded and the child never outlives the context manager."""

    def __init__(self, *, frames: int, size: int, start_timeout: float = 15.0) -> None:
        self.args = ["--frames", str(frames), "--size", str(size)]
        self.start_timeout = start_timeout
        self.url = ""
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def __aenter__(self) -> EchoServerProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.echo_server",
            *self.args,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the benchmark, which stops the child
        )
        try:
            assert self.process.stdout is not None
            raw = await asyncio.wait_for(self.process.stdout.readline(), self.start_timeout)
            line = raw.decode(errors="replace")
            if not line.startswith(READY_PREFIX):
                raise RuntimeError(f"echo server did not start: first line was {line!r}")
        except BaseException:
            await self.stop()
            raise
        self.url = line.removeprefix(READY_PREFIX).strip()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Safe to call twice."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.wait_for(process.wait(), timeout)


if __name__ == "__main__":
    raise SystemExit(main())
