"""Reconnection storm: every client of a server loses its connection at once and resumes at once.

Topology: the reference server (memory store, default options) in a child process; one
Toxiproxy server (the harness's ``ToxiproxyServer``) with one proxy in front of it; ``N``
``AsyncClient`` clients in this process, each connected through the proxy with a session on
which it has chatted once. The proxy is then disabled (Toxiproxy cuts every connection) and,
once the server has seen every connection go, enabled again; then every client calls
``resume()`` at the same moment (one ``asyncio.gather``, no semaphore, no pacing). A client's
latency runs from its own call to its ``Attached`` event; the storm time from the start of the
gather to the last ``Attached``. After each storm every client chats once more; at the end each
client's delivered stream is checked: seqs 1..n exactly, no ``DuplicateDelivery``, no protocol
error.

The baseline, in the same run and through the same proxy: while the clients are cut off, the
proxy is pointed at ``bench.echo_server`` (Toxiproxy restarts it on the same port) and ``N``
bare ``websockets`` ``connect()`` calls (the opening handshake only) go at once the same way;
then the proxy is pointed back at the reference server and the clients resume. The full
mode runs 3 rounds of each mode (below) and judges the goal on the median round.

Toxiproxy accepts a client and dials its upstream in one loop, one connection after the other
(``proxy.go``), so when the upstream's accept queue is full the dial's SYN is dropped and the
whole proxy waits for the SYN retransmission, about 1 s. Both Python servers listen with
asyncio's default backlog of 100. Each storm therefore counts the kernel's
``TcpExt.ListenOverflows`` (``/proc/net/netstat``, this network namespace) around it, and each
round also runs both storms "paced": at most ``PACED`` connects or resumes in flight (a
semaphore; a latency then runs from the semaphore's grant), which keeps every accept queue
short, so the paced ratio is the CPU cost alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import resource
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect

from harness.checkers import percentile
from harness.faults.toxiproxy_client import ToxiproxyClient
from harness.faults.toxiproxy_server import ToxiproxyServer
from reference_server.aio_client import AsyncClient
from reference_server.protocol import Attached, DuplicateDelivery

from .echo_server import EchoServerProcess
from .throughput import CONNECT_OPTIONS, BenchError, credentials, log_problems, reference_server

T = TypeVar("T")
Mode = Literal["at once", "paced"]
GOAL = 2.0
"""The resume storm takes at most this many times the bare connect storm."""
PACED = 64
"""In-flight limit of the paced storms (and of the untimed setup)."""
OPEN_TIMEOUT_S = 30.0
STORM_TIMEOUT_S = 90.0
PHASE_TIMEOUT_S = 240.0
PROXY = "storm"


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Raise this process's soft open-files limit towards ``wanted`` (at most the hard limit);
    return (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def listen_overflows() -> int:
    """``TcpExt.ListenOverflows``: SYNs dropped because a listener's accept queue was full
    (-1 where unavailable)."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as netstat:
            lines = netstat.read().splitlines()
    except OSError:
        return -1
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            found = dict(zip(head.split()[1:], values.split()[1:], strict=False))
            return int(found.get("ListenOverflows", -1))
    return -1


async def metric(base: str, name: str) -> float:
    """One unlabelled sample of the server's ``GET /metrics`` (nan if absent)."""
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        text = (await http.get(f"{base}/metrics")).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``check`` every 20 ms until it holds; ``BenchError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def gated(items: Sequence[Callable[[], Awaitable[T]]], limit: int | None) -> list[T]:
    """Run the calls together, at most ``limit`` at once (None: all at once)."""
    if limit is None:
        return await asyncio.gather(*(c() for c in items))
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(c) for c in items))


@dataclass
class Storm:
    """One storm: per-connection latencies (s), the time to the last, outcomes, and the SYNs
    the kernel dropped at full accept queues meanwhile."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    overflows: int = 0


@dataclass
class Round:
    mode: Mode
    bare: Storm
    resume: Storm

    @property
    def ratio(self) -> float:
        return self.resume.seconds / self.bare.seconds


@dataclass
class Measured:
    """Every round and the checks over the whole run."""

    clients: int
    rounds: list[Round] = field(default_factory=list)
    checked: int = 0
    losses: int = 0
    duplicates: int = 0
    errors: int = 0
    examples: list[str] = field(default_factory=list)
    takeovers: float = 0.0
    fd_limit: tuple[int, int] = (0, 0)
    problems: list[str] = field(default_factory=list)


async def _set_proxy(api_url: str, upstream: str) -> None:
    """Point the proxy at ``upstream`` and enable it (Toxiproxy restarts it on its port)."""
    async with httpx.AsyncClient(base_url=api_url, trust_env=False, timeout=10) as http:
        for body in ({"upstream": upstream}, {"enabled": True}):
            response = await http.post(f"/proxies/{PROXY}", json=body)
            response.raise_for_status()


async def _timed(calls: Sequence[Callable[[Storm], Awaitable[None]]], limit: int | None) -> Storm:
    storm = Storm()
    overflows = listen_overflows()
    start = time.perf_counter()
    async with asyncio.timeout(STORM_TIMEOUT_S):
        await gated([functools.partial(c, storm) for c in calls], limit)
    storm.seconds = time.perf_counter() - start
    storm.overflows = listen_overflows() - overflows
    return storm


async def _bare_storm(url: str, n: int, limit: int | None) -> Storm:
    """``n`` bare connects; every connection is closed after the storm."""
    opened: list[ClientConnection] = []

    async def one(storm: Storm) -> None:
        start = time.perf_counter()
        try:
            ws = await connect(url, **{**CONNECT_OPTIONS, "open_timeout": OPEN_TIMEOUT_S})
        except Exception as exc:
            storm.outcomes[f"failed: {type(exc).__name__}"] += 1
            return
        storm.latencies.append(time.perf_counter() - start)
        storm.outcomes["open"] += 1
        opened.append(ws)

    try:
        return await _timed([one] * n, limit)
    finally:
        await gated([ws.close for ws in opened], PACED)


async def _resume_storm(clients: list[AsyncClient], limit: int | None) -> Storm:
    async def one(client: AsyncClient, storm: Storm) -> None:
        start = time.perf_counter()
        try:
            result = await client.resume(timeout=OPEN_TIMEOUT_S)
        except Exception as exc:
            storm.outcomes[f"failed: {type(exc).__name__}"] += 1
            return
        if isinstance(result, Attached):
            storm.latencies.append(time.perf_counter() - start)
            storm.outcomes[result.outcome] += 1
        else:
            storm.outcomes[f"rejected: {result.reason}"] += 1

    return await _timed([functools.partial(one, c) for c in clients], limit)


def _check(clients: list[AsyncClient], measured: Measured) -> None:
    """Every client's delivered seqs are 1..n, with no duplicate and no protocol error."""
    for index, client in enumerate(clients):
        seqs = [m.seq for m in client.delivered]
        dups = sum(isinstance(e, DuplicateDelivery) for e in client.events)
        measured.checked += 1
        if seqs != list(range(1, len(seqs) + 1)):
            measured.losses += 1
            measured.examples.append(f"client {index}: seqs {seqs[:20]}")
        measured.duplicates += dups
        measured.errors += len(client.errors)
        if client.errors:
            measured.examples.append(f"client {index}: {client.errors[0]}")


async def _measure(n: int, rounds: int) -> Measured:
    fd_limit = raise_fd_limit(4 * n + 1024)
    creds = credentials()
    measured = Measured(n, fd_limit=fd_limit)
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            server = await stack.enter_async_context(
                reference_server("memory", creds, Path(tmp), "memory")
            )
            echo = await stack.enter_async_context(EchoServerProcess(frames=1, size=16))
            toxiproxy = await stack.enter_async_context(ToxiproxyServer())
            api = await stack.enter_async_context(ToxiproxyClient(toxiproxy.url))
            server_up = server.url.split("://", 1)[1].split("/", 1)[0]
            echo_up = echo.url.split("://", 1)[1].split("/", 1)[0]
            base = f"http://{server_up}"
            proxy = await api.create_proxy(PROXY, server_up)
            url = f"ws://127.0.0.1:{proxy.port}/ws"
            clients = [AsyncClient(url, creds.token, open_timeout=OPEN_TIMEOUT_S) for _ in range(n)]
            # Registered before any connects: on error too, no client socket outlives the run.
            stack.push_async_callback(gated, [c.drop for c in clients], PACED)

            async def first(client: AsyncClient) -> None:
                attached = await client.connect(timeout=OPEN_TIMEOUT_S)
                if not isinstance(attached, Attached):
                    raise BenchError(f"hello refused: {attached}")
                await client.chat("hello", timeout=OPEN_TIMEOUT_S)

            async def all_gone() -> bool:
                if any(c.connected for c in clients):
                    return False
                return await metric(base, "ws_connections") == 0

            async with asyncio.timeout(PHASE_TIMEOUT_S):
                await gated([functools.partial(first, c) for c in clients], PACED)
                await asyncio.sleep(0.1)  # the batched acks go out
                takeovers = await metric(base, "ws_session_takeovers_total")
                modes: list[Mode] = ["at once", "paced"]
                for _ in range(rounds):
                    for mode in modes:
                        limit = None if mode == "at once" else PACED
                        await api.set_enabled(PROXY, False)
                        await until(all_gone, 30, "every connection to be seen as cut")
                        await _set_proxy(toxiproxy.url, echo_up)
                        bare = await _bare_storm(f"ws://127.0.0.1:{proxy.port}/", n, limit)
                        await api.set_enabled(PROXY, False)
                        await _set_proxy(toxiproxy.url, server_up)
                        resume = await _resume_storm(clients, limit)
                        measured.rounds.append(Round(mode, bare, resume))
                        # One more chat each: the stream goes on after the resume.
                        await gated(
                            [functools.partial(c.chat, "again", OPEN_TIMEOUT_S) for c in clients],
                            PACED,
                        )
                await asyncio.sleep(0.1)
                _check(clients, measured)
                measured.takeovers = await metric(base, "ws_session_takeovers_total") - takeovers
                await gated([c.bye for c in clients], PACED)
            await stack.aclose()  # stop the servers, then read their logs
            measured.problems = log_problems(server)
    return measured


def _ms(value: float) -> str:
    return f"{value * 1e3:,.0f}"


def _verdict(ratios: list[float]) -> str:
    middle = statistics.median(ratios)
    every = ", ".join(f"{r:.2f}x" for r in ratios)
    return (
        f"**{'met' if middle <= GOAL else 'NOT met'}** (median round {middle:.2f}x, worst "
        f"{max(ratios):.2f}x; every round: {every})"
    )


def _table(m: Measured) -> str:
    lines = [
        f"{m.clients} clients through one Toxiproxy proxy to the reference server (memory store, "
        "default options), all in this process. A round: the proxy disabled (every connection "
        "cut); once the server has seen them go, the proxy pointed at the echo server for the "
        f"baseline ({m.clients} bare `connect()`), then back at the reference server for the "
        f"storm ({m.clients} `AsyncClient.resume()`), then one more chat per client. **at once**: "
        f"one `gather`, no semaphore; **paced**: at most {PACED} in flight. Open timeout "
        f"{OPEN_TIMEOUT_S:g} s. Milliseconds; a latency runs from the call (paced: from the "
        "semaphore's grant) to the open connection (bare) or the `Attached` event (resume). "
        "Overflows: SYNs the kernel dropped at a full accept queue during the storm "
        "(`TcpExt.ListenOverflows`).",
        "",
        "| round | mode | storm | p50 | p99 | max | time to the last | outcomes | overflows "
        "| resume vs bare |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for i, r in enumerate(m.rounds, start=1):
        for label, storm in (("bare `connect()`, echo", r.bare), ("resume", r.resume)):
            outcomes = ", ".join(f"{n} {o}" for o, n in sorted(storm.outcomes.items()))
            lines.append(
                f"| {(i + 1) // 2} | {r.mode} | {label} | {_ms(percentile(storm.latencies, 50))} "
                f"| {_ms(percentile(storm.latencies, 99))} "
                f"| {_ms(max(storm.latencies, default=float('nan')))} | {_ms(storm.seconds)} "
                f"| {outcomes} | {storm.overflows} "
                f"| {storm.seconds / r.bare.seconds:.2f}x |"
            )
    at_once = [r.ratio for r in m.rounds if r.mode == "at once"]
    paced = [r.ratio for r in m.rounds if r.mode == "paced"]
    all_back = all(r.resume.outcomes.total() == r.resume.outcomes["full"] for r in m.rounds)
    clean = m.losses == 0 and m.duplicates == 0 and m.errors == 0
    lines += [
        "",
        f"Goal (the resume storm at most {GOAL:g}x the bare connect storm), every client at "
        f"once: {_verdict(at_once)}. Paced, for the CPU cost alone: {_verdict(paced)}. "
        f"Every resume `full`: {'yes' if all_back else 'NO'}.",
        "",
        f"- Delivery, checked at the end over every client's whole stream (one chat before the "
        f"first storm and one after each): {m.checked} clients, {m.losses} with lost or "
        f"out-of-order seqs, {m.duplicates} `DuplicateDelivery` events, {m.errors} protocol "
        f"errors: **{'clean' if clean else 'NOT clean'}**."
        + (f" First: {'; '.join(m.examples[:3])}" if m.examples else ""),
        f"- Session takeovers during the run: {m.takeovers:.0f}.",
        "- Toxiproxy dials the upstream in its accept loop, one connection at a time, and both "
        "Python servers listen with asyncio's default backlog (100): a storm that fills the "
        "upstream's accept queue loses a SYN, and the whole proxy waits about 1 s for its "
        "retransmission (the latencies then come in 1 s steps). Overflows above count those "
        "stalls.",
        f"- Open files limit of the benchmark process: {m.fd_limit[0]} (hard {m.fd_limit[1]}); "
        "children inherit it unchanged.",
        "- Server log: "
        + (
            "clean (nothing at WARNING or above)."
            if not m.problems
            else f"{len(m.problems)} problem line(s), first: `{m.problems[0][:200]}`"
        ),
    ]
    return "\n".join(lines)


def run(quick: bool = False) -> tuple[Measured, str]:
    """Measure; return the figures and a markdown table."""
    measured = asyncio.run(_measure(100 if quick else 1000, 1 if quick else 3))
    return measured, _table(measured)


def main(argv: Sequence[str] = ()) -> str:
    """Run and return the markdown table."""
    return run(quick="--quick" in argv)[1]
