"""One client process of the reconnection storm (bench/storm.py): a share of the clients.

``python -m bench.storm_worker --url URL --token-env NAME --clients K`` holds ``K``
``AsyncClient`` clients of the proxy's URL and obeys one JSON command per stdin line, answering
each with one JSON line on stdout (``{"error": ...}`` if it failed):

- ``setup``: connect every client (at most ``PACED`` in flight) and chat once;
- ``connected``: how many clients still count themselves connected;
- ``bare`` (``limit``): ``K`` bare ``websockets`` ``connect()`` to the same URL together (the
  parent has pointed the proxy at the echo server; at most ``limit`` in flight; null: all at
  once), then close them;
- ``resume`` (``limit``): every client resumes together, the same way;
- ``chat``: one more chat each;
- ``check``: each client's delivered seqs are 1..n, with no duplicate and no protocol error;
- ``bye``: end every session and exit.

A storm's answer holds each connection's latency (seconds from its own call, or from the
semaphore's grant, to its open connection or ``Attached``), the outcomes, and ``last``: the
``time.monotonic()`` of the last completion, which the parent compares across processes
(CLOCK_MONOTONIC is one clock for the whole machine).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect

from reference_server.aio_client import AsyncClient
from reference_server.protocol import Attached, DuplicateDelivery

from .throughput import CONNECT_OPTIONS

T = TypeVar("T")
PACED = 64
OPEN_TIMEOUT_S = 60.0
STORM_TIMEOUT_S = 90.0
PHASE_TIMEOUT_S = 240.0


async def gated(items: Sequence[Callable[[], Awaitable[T]]], limit: int | None) -> list[T]:
    """Run the calls together, at most ``limit`` at once (None: all at once)."""
    if limit is None:
        return await asyncio.gather(*(c() for c in items))
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(c) for c in items))


class Storm:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.last = 0.0

    def done(self, start: float, outcome: str) -> None:
        now = time.monotonic()
        self.latencies.append(now - start)
        self.outcomes[outcome] += 1
        self.last = max(self.last, now)

    def answer(self) -> dict[str, Any]:
        return {"latencies": self.latencies, "outcomes": dict(self.outcomes), "last": self.last}


class Worker:
    def __init__(self, url: str, token: str, clients: int) -> None:
        self.url = url
        self.clients = [
            AsyncClient(url, token, open_timeout=OPEN_TIMEOUT_S) for _ in range(clients)
        ]

    async def setup(self) -> dict[str, Any]:
        async def first(client: AsyncClient) -> None:
            attached = await client.connect(timeout=OPEN_TIMEOUT_S)
            if not isinstance(attached, Attached):
                raise RuntimeError(f"hello refused: {attached}")
            await client.chat("hello", timeout=OPEN_TIMEOUT_S)

        async with asyncio.timeout(PHASE_TIMEOUT_S):
            await gated([functools.partial(first, c) for c in self.clients], PACED)
        return {"ok": True}

    async def connected(self) -> dict[str, Any]:
        return {"connected": sum(c.connected for c in self.clients)}

    async def bare(self, limit: int | None) -> dict[str, Any]:
        """Bare connects through this worker's proxy (pointed at the echo server by then)."""
        url = self.url
        storm, opened = Storm(), []

        async def one() -> None:
            start = time.monotonic()
            try:
                ws: ClientConnection = await connect(
                    url, **{**CONNECT_OPTIONS, "open_timeout": OPEN_TIMEOUT_S}
                )
            except Exception as exc:
                storm.outcomes[f"failed: {type(exc).__name__}"] += 1
                return
            storm.done(start, "open")
            opened.append(ws)

        try:
            async with asyncio.timeout(STORM_TIMEOUT_S):
                await gated([one] * len(self.clients), limit)
        finally:
            await gated([ws.close for ws in opened], PACED)
        return storm.answer()

    async def resume(self, limit: int | None) -> dict[str, Any]:
        storm = Storm()

        async def one(client: AsyncClient) -> None:
            start = time.monotonic()
            try:
                result = await client.resume(timeout=OPEN_TIMEOUT_S)
            except Exception as exc:
                storm.outcomes[f"failed: {type(exc).__name__}"] += 1
                return
            if isinstance(result, Attached):
                storm.done(start, result.outcome)
            else:
                storm.outcomes[f"rejected: {result.reason}"] += 1

        async with asyncio.timeout(STORM_TIMEOUT_S):
            await gated([functools.partial(one, c) for c in self.clients], limit)
        return storm.answer()

    async def chat(self) -> dict[str, Any]:
        """One chat each; a client whose chat fails is counted, with its close codes."""
        failures: list[str] = []

        async def one(index: int, client: AsyncClient) -> None:
            try:
                await client.chat("again", OPEN_TIMEOUT_S)
            except Exception as exc:
                failures.append(
                    f"client {index}: {type(exc).__name__}: {exc}; close codes "
                    f"{client.close_codes[-3:]}, connected {client.connected}"
                )

        async with asyncio.timeout(PHASE_TIMEOUT_S):
            await gated([functools.partial(one, i, c) for i, c in enumerate(self.clients)], PACED)
        await asyncio.sleep(0.1)  # the batched acks go out
        return {"failed": len(failures), "examples": failures[:3]}

    async def check(self) -> dict[str, Any]:
        losses = duplicates = errors = 0
        examples: list[str] = []
        for index, client in enumerate(self.clients):
            seqs = [m.seq for m in client.delivered]
            if seqs != list(range(1, len(seqs) + 1)):
                losses += 1
                examples.append(f"client {index}: seqs {seqs[:20]}")
            duplicates += sum(isinstance(e, DuplicateDelivery) for e in client.events)
            errors += len(client.errors)
            if client.errors:
                examples.append(f"client {index}: {client.errors[0]}")
        return {
            "checked": len(self.clients),
            "losses": losses,
            "duplicates": duplicates,
            "errors": errors,
            "examples": examples[:5],
        }

    async def bye(self) -> dict[str, Any]:
        async with asyncio.timeout(PHASE_TIMEOUT_S):
            await gated([c.bye for c in self.clients], PACED)
        return {"ok": True}

    async def drop_all(self) -> None:
        await gated([c.drop for c in self.clients], PACED)


async def serve(worker: Worker) -> None:
    """Obey commands until ``bye`` or the end of stdin; every client dropped at the end."""
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            op = command.pop("op")
            try:
                answer = await getattr(worker, op)(**command)
            except Exception as exc:
                answer = {"error": f"{op}: {type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
            if op == "bye":
                return
    finally:
        await worker.drop_all()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm_worker", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-env", required=True)
    parser.add_argument("--clients", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(Worker(args.url, os.environ[args.token_env], args.clients)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
