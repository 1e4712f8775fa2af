"""Throughput: chat turns per second through the full protocol, against a bare ``websockets`` echo.

Topology, the same for every target: each server runs in its own child process (one is
driven at a time; the others sit idle), the client in this process, over 127.0.0.1. The targets
are the reference server (``--chunk-delay 0``) with the memory store, the SQLite store and the Redis
store (one node on a ``redis-server`` of its own, append-only file, over 127.0.0.1), and
``bench.echo_server``, which answers each frame with as many frames as the reference agent
streams per user message (measured from a real reply first), each of the average size of a real
reply chunk.

The client opens ``CONNECTIONS`` connections and keeps one request in flight on each, so
``WINDOW`` requests are in flight in all, until 3000 requests (quick: 200) are answered. Against the
reference server each connection is a session driven by ``ClientProtocol`` directly (not
``AsyncClient``, whose per-frame acks and waiting helpers would dominate; see the notes in the
table): a request is a ``user_message``; the reply is its numbered chunks, each decoded, checked
for order and counted once, and acknowledged with one cumulative ``ack`` per reply, sent with
the next request. The server stores every change (the request, the reply, each ack) before it
sends what the change produced. Against the echo server a request is one frame and its reply
the echoed frames, counted and not parsed. The table gives the best of 5 interleaved runs
(quick: 1) of every target, after one untimed run each. The goal is judged apart, on
``GOAL_PAIRS`` pairs of short runs (an echo run and a memory run, alternating which goes
first, the servers pinned to one CPU and the client to the other, the two swapped from pair
to pair): the median of the pairs' ratios, with a distribution-free confidence interval from
their order statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from reference_server import auth
from reference_server.__main__ import SECRET_ENV
from reference_server.batched_send import send_texts
from reference_server.config import ServerConfig
from reference_server.launcher import ServerProcess
from reference_server.protocol import (
    Acknowledged,
    Attached,
    ClientProtocol,
    Delivered,
    codec,
)
from reference_server.protocol.messages import ReplyChunk, UserMessage
from reference_server.redis_process import RedisProcess

from .echo_server import EchoServerProcess

TEXT = "hello"
"""The chat turn sent: no tool call, a reply of 13 words, streamed as 4 chunks."""
CONNECTIONS = 16
PER_CONNECTION = 1
WINDOW = CONNECTIONS * PER_CONNECTION
GOAL = 0.7
"""Issue 15's goal (0.5 before it): the memory store reaches at least this fraction of the
echo's reply frames/s."""
GOAL_PAIRS = 40
"""The goal is judged on this many pairs of short runs, an echo run and a memory run each, in
alternating order: a pair takes a fraction of a second, so both its runs usually see the
machine at one speed, which 3,000-request runs seconds apart did not (this machine was seen
to switch between two speeds about 1.7x apart within seconds, 2026-12-02)."""
PAIR_REQUESTS = 1000
CONFIDENCE = 0.95
"""The goal is met when the lower end of this confidence interval of the pairs' median ratio
is at or above ``GOAL``, missed when its upper end is below, and inconclusive otherwise."""
RUN_TIMEOUT_S = 60.0
CPU_MIN_RUN_S = 0.2
WARMUP_REQUESTS = 800
CONNECT_OPTIONS: dict[str, Any] = {
    "open_timeout": 5,
    "close_timeout": 1,
    "ping_interval": None,
    "compression": None,
    "proxy": None,
    "max_size": None,
}
"""What ``AsyncClient`` passes to ``connect()``, so every client here opens the same way."""


class BenchError(RuntimeError):
    """A run saw something wrong: an error, a lost or duplicated frame, a close."""


# --- servers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """The signing secret a reference server is started with, and a token it accepts."""

    env: dict[str, str]
    token: str


def credentials(user: str = "bench") -> Credentials:
    """A fresh secret (never the development one) and a token for ``user``."""
    secret = secrets.token_urlsafe(48)
    return Credentials(env={SECRET_ENV: secret}, token=auth.mint(user, secret, ttl_s=3600))


def reference_server(store: str, creds: Credentials, workdir: Path, name: str) -> ServerProcess:
    """A reference server child process with no pause between reply chunks."""
    return ServerProcess(
        ["--store", store, "--chunk-delay", "0"],
        env=creds.env,
        log_path=workdir / f"{name}.log",
    )


def tick_cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (Linux ``/proc/PID/stat``, in clock ticks of
    10 ms); 0.0 where unavailable."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """CPU time of a process's threads so far, from the scheduler's nanosecond counts
    (``/proc/PID/task/*/schedstat``: a run of 0.1 s is measured to well under 1%, where clock
    ticks are 10 ms each); ``tick_cpu_seconds`` where the kernel has no such counts. Threads
    that ended are not counted: for processes whose threads outlive the measurement (the
    servers here)."""
    if pid is None:
        return 0.0
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return tick_cpu_seconds(pid)
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:  # the thread ended since the listing
            continue
        except (OSError, ValueError, IndexError):
            return tick_cpu_seconds(pid)
    return total / 1e9


# --- the reference server, through the protocol -----------------------------------------------


async def open_session(url: str, token: str) -> tuple[ClientConnection, ClientProtocol]:
    """Open a connection and a new session (hello, welcome)."""
    ws = await connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, **CONNECT_OPTIONS
    )
    protocol = ClientProtocol()
    protocol.hello()
    try:
        for frame in protocol.data_to_send():
            await ws.send(frame, text=True)
        async with asyncio.timeout(5):
            while True:
                events = protocol.receive(await ws.recv(decode=False))
                if any(isinstance(e, Attached) for e in events):
                    return ws, protocol
                if events:
                    raise BenchError(f"hello answered with {events}")
    except BaseException:
        await ws.close()
        raise


async def close_session(ws: ClientConnection, protocol: ClientProtocol) -> None:
    """Acknowledge what was delivered, end the session (bye) and close the connection."""
    with contextlib.suppress(Exception):
        frames = protocol.data_to_send()  # the last cumulative ack
        protocol.bye()
        for frame in frames + protocol.data_to_send():
            await ws.send(frame, text=True)
    await ws.close()


async def measure_reply(url: str, token: str, turns: int = 6) -> tuple[int, int]:
    """Send ``turns`` chat turns on one session; return the chunks and the average chunk frame
    size (bytes) of the last reply (by then the agent's workflow has reached its last step)."""
    ws, protocol = await open_session(url, token)
    try:
        sizes: list[int] = []
        for _ in range(turns):
            request = protocol.send_user_message(TEXT)
            for frame in protocol.data_to_send():
                await ws.send(frame, text=True)
            sizes = []
            async with asyncio.timeout(5):
                while True:
                    frame = await ws.recv(decode=False)
                    assert isinstance(frame, bytes)
                    events = protocol.receive(frame)
                    chunk = next((e.message for e in events if isinstance(e, Delivered)), None)
                    if isinstance(chunk, ReplyChunk) and chunk.in_reply_to == request.id:
                        sizes.append(len(frame))
                        if chunk.final:
                            break
        return len(sizes), round(sum(sizes) / len(sizes))
    finally:
        await close_session(ws, protocol)


async def _drive_reference(
    ws: ClientConnection, protocol: ClientProtocol, quota: int, window: int, chunks: int
) -> tuple[int, int]:
    """Send ``quota`` requests keeping ``window`` in flight; return (reply frames, acks)."""
    sent = done = frames = acks = 0
    pending: dict[str, int] = {}  # request id -> next chunk index expected

    def send_one() -> None:
        nonlocal sent
        request = protocol.send_user_message(TEXT)
        pending[request.id] = 0
        sent += 1

    for _ in range(min(window, quota)):
        send_one()
    await send_texts(ws, protocol.data_to_send())
    while done < quota or protocol.unacked:
        for event in protocol.receive(await ws.recv(decode=False)):
            # Exact types, the common one first (as AsyncClient tells its events apart): an
            # isinstance() against a Struct class that does not match costs ~1,400 instructions.
            if type(event) is not Delivered:
                if type(event) is Acknowledged:
                    acks += 1
                    continue
                raise BenchError(f"unexpected {event!r}")
            chunk = event.message
            if type(chunk) is not ReplyChunk:
                raise BenchError(f"unexpected {event!r}")
            if pending.get(chunk.in_reply_to) != chunk.chunk_index:
                raise BenchError(f"chunk out of order or duplicated: {chunk!r}")
            frames += 1
            if not chunk.final:
                pending[chunk.in_reply_to] += 1
                continue
            if chunk.chunk_index + 1 != chunks:
                raise BenchError(f"reply of {chunk.chunk_index + 1} chunks, expected {chunks}")
            del pending[chunk.in_reply_to]
            done += 1
            if sent < quota:
                send_one()
            # One cumulative ack per reply, after the next request (§5: ack per batch), in one
            # write with it, as AsyncClient sends (the client's cost stays out of the figure).
            await send_texts(ws, protocol.data_to_send())
    return frames, acks


# --- the echo server ------------------------------------------------------------------------


async def _drive_echo(ws: ClientConnection, quota: int, window: int, chunks: int) -> int:
    """Send ``quota`` frames keeping ``window`` in flight; return the frames received."""
    request = codec.encode(UserMessage(id="u1", seq=1, text=TEXT))  # the same size on the wire
    sent = received = 0
    for _ in range(min(window, quota)):
        await ws.send(request, text=True)
        sent += 1
    while received < quota * chunks:
        await ws.recv(decode=False)
        received += 1
        if received % chunks == 0 and sent < quota:
            await ws.send(request, text=True)
            sent += 1
    return received


# --- one run ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run against one server."""

    requests: int
    frames: int
    seconds: float
    server_cpu_s: float
    client_cpu_s: float
    acks: int = 0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds


def _quotas(requests: int, connections: int) -> list[int]:
    base, extra = divmod(requests, connections)
    return [base + (i < extra) for i in range(connections)]


def _check_flood_budget(requests: int, connections: int) -> None:
    # The reference server closes a connection (1008) that sends more than its flood limit:
    # ``frame_burst`` frames at once, refilled at ``max_frames_per_s``. Acks and pongs are free
    # (§12.1): a connection here spends one frame per request, plus its bye.
    config = ServerConfig()
    per_connection = math.ceil(requests / connections) + 1
    if per_connection > config.frame_burst:
        raise ValueError(
            f"{requests} requests over {connections} connections is {per_connection} frames "
            f"per connection, over the server's flood burst of {config.frame_burst}"
        )


async def run_reference(
    url: str,
    token: str,
    requests: int,
    *,
    chunks: int,
    connections: int = CONNECTIONS,
    per_connection: int = PER_CONNECTION,
    server_pid: int | None = None,
    store_pid: int | None = None,
) -> Run:
    """One timed run against a reference server at ``url`` (sessions opened before timing);
    the server CPU counted is the server's plus, with ``store_pid``, its store process's."""
    _check_flood_budget(requests, connections)
    sessions: list[tuple[ClientConnection, ClientProtocol]] = []
    try:
        for _ in range(connections):
            sessions.append(await open_session(url, token))
        server0 = cpu_seconds(server_pid) + cpu_seconds(store_pid)
        cpu0, start = time.process_time(), time.perf_counter()
        async with asyncio.timeout(RUN_TIMEOUT_S):
            results = await asyncio.gather(
                *(
                    _drive_reference(ws, protocol, quota, per_connection, chunks)
                    for (ws, protocol), quota in zip(
                        sessions, _quotas(requests, connections), strict=True
                    )
                )
            )
        seconds = time.perf_counter() - start
        server_cpu = cpu_seconds(server_pid) + cpu_seconds(store_pid) - server0
        client_cpu = time.process_time() - cpu0
    finally:
        await asyncio.gather(*(close_session(ws, p) for ws, p in sessions))
    frames = sum(f for f, _ in results)
    if frames != requests * chunks:
        raise BenchError(f"{frames} reply frames delivered, expected {requests * chunks}")
    return Run(requests, frames, seconds, server_cpu, client_cpu, sum(a for _, a in results))


async def run_echo(
    url: str,
    requests: int,
    *,
    chunks: int,
    connections: int = CONNECTIONS,
    per_connection: int = PER_CONNECTION,
    server_pid: int | None = None,
) -> Run:
    """One timed run against the echo server at ``url`` (connections opened before timing)."""
    sockets: list[ClientConnection] = []
    try:
        for _ in range(connections):
            sockets.append(await connect(url, **CONNECT_OPTIONS))
        cpu0, server0, start = time.process_time(), cpu_seconds(server_pid), time.perf_counter()
        async with asyncio.timeout(RUN_TIMEOUT_S):
            received = await asyncio.gather(
                *(
                    _drive_echo(ws, quota, per_connection, chunks)
                    for ws, quota in zip(sockets, _quotas(requests, connections), strict=True)
                )
            )
        seconds = time.perf_counter() - start
        server_cpu, client_cpu = cpu_seconds(server_pid) - server0, time.process_time() - cpu0
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
    return Run(requests, sum(received), seconds, server_cpu, client_cpu)


# --- the benchmark ----------------------------------------------------------------------------


def log_problems(*servers: ServerProcess) -> list[str]:
    """Lines the servers logged at WARNING or above, or with a traceback (the development
    secret warning cannot appear: the secret is always set)."""
    problems = []
    for server in servers:
        with contextlib.suppress(OSError):
            for line in server.log_path.read_text(errors="replace").splitlines():
                if any(
                    word in line for word in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback")
                ):
                    problems.append(f"{server.log_path.stem}: {line}")
    return problems


@dataclass(frozen=True, slots=True)
class Measured:
    """Every run per server (in run order), the reply shape, and what the servers logged."""

    runs: dict[str, list[Run]]
    pairs: list[tuple[Run, Run]]
    """The goal's short runs: (echo, memory) pair by pair, in run order."""
    pinned: bool
    """Whether the pairs ran with the servers and the client pinned to separate CPUs."""
    chunks: int
    size: int
    problems: list[str]

    def best(self, name: str) -> Run:
        return max(self.runs[name], key=lambda r: r.frames_per_s)


async def _measure(quick: bool) -> Measured:
    requests = 200 if quick else 3000
    repeats = 1 if quick else 5
    creds = credentials()
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        workdir = Path(tmp)
        async with contextlib.AsyncExitStack() as stack:
            memory = await stack.enter_async_context(
                reference_server("memory", creds, workdir, "memory")
            )
            sqlite = await stack.enter_async_context(
                reference_server(f"sqlite:{workdir / 'b.db'}", creds, workdir, "sqlite")
            )
            redis = stack.enter_context(RedisProcess(workdir / "redis"))
            on_redis = await stack.enter_async_context(
                reference_server(redis.url, creds, workdir, "redis")
            )
            chunks, size = await measure_reply(memory.url, creds.token)
            echo = await stack.enter_async_context(EchoServerProcess(frames=chunks, size=size))
            # One untimed run each first: code paths, allocators and caches warm up.
            warmup = min(requests, WARMUP_REQUESTS)
            await run_echo(echo.url, warmup, chunks=chunks)
            redis_pid = redis.process.pid if redis.process is not None else None
            stores = (
                ("memory", memory, None),
                ("sqlite", sqlite, None),
                ("redis", on_redis, redis_pid),
            )
            for _, server, _ in stores:
                await run_reference(server.url, creds.token, warmup, chunks=chunks)
            runs: dict[str, list[Run]] = {"echo": [], "memory": [], "sqlite": [], "redis": []}
            for _ in range(repeats):  # interleaved, so drift hits every target alike
                runs["echo"].append(
                    await run_echo(echo.url, requests, chunks=chunks, server_pid=echo.pid)
                )
                for name, server, store_pid in stores:
                    runs[name].append(
                        await run_reference(
                            server.url,
                            creds.token,
                            requests,
                            chunks=chunks,
                            server_pid=server.pid,
                            store_pid=store_pid,
                        )
                    )
            pairs = []
            placements = cpu_placements()
            for i in range(GOAL_PAIRS if not quick else 1):
                with pinned(placements[i % len(placements)], (echo.pid, memory.pid)):
                    pair = await _pair(i, echo, memory, creds, chunks)
                pairs.append((pair["echo"], pair["memory"]))
            await stack.aclose()  # stop the servers, then read their logs
            problems = log_problems(memory, sqlite, on_redis)
            return Measured(runs, pairs, placements[0] is not None, chunks, size, problems)


async def _pair(
    i: int, echo: ServerProcess, memory: ServerProcess, creds: Credentials, chunks: int
) -> dict[str, Run]:
    """One pair of the goal's runs, the echo first in even pairs, the memory store in odd."""
    pair: dict[str, Run] = {}
    for name in ("echo", "memory") if i % 2 == 0 else ("memory", "echo"):
        if name == "echo":
            pair[name] = await run_echo(echo.url, PAIR_REQUESTS, chunks=chunks, server_pid=echo.pid)
        else:
            pair[name] = await run_reference(
                memory.url, creds.token, PAIR_REQUESTS, chunks=chunks, server_pid=memory.pid
            )
    return pair


def cpu_placements() -> list[tuple[int, int] | None]:
    """(server CPU, client CPU) for the goal's pairs, alternating, so that both runs of a pair
    have the same placement and each placement is sampled alike: on this machine each of the
    two cores changes speed on its own, and where the scheduler put the server and the client
    moved a whole run's figure (unpinned runs minutes apart read medians of 0.75x to 0.92x,
    2026-12-02 17:11-17:15). [None] (no pinning) with fewer than two CPUs or no
    ``sched_setaffinity``."""
    if not hasattr(os, "sched_setaffinity"):
        return [None]
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [None]
    return [(cpus[0], cpus[1]), (cpus[1], cpus[0])]


@contextlib.contextmanager
def pinned(placement: tuple[int, int] | None, servers: Sequence[int | None]) -> Iterator[None]:
    """Run the servers on one CPU and this process (the client) on the other; this process's
    CPUs come back after."""
    if placement is None:
        yield
        return
    server_cpu, client_cpu = placement
    own = os.sched_getaffinity(0)
    for pid in servers:
        if pid is not None:
            os.sched_setaffinity(pid, {server_cpu})
    os.sched_setaffinity(0, {client_cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


def _cpu_per_request(runs: list[Run], which: str) -> float | None:
    """CPU µs per request over every run, or None when the runs are too short to tell (the
    client's ``process_time`` and, without schedstat, the server's ``/proc`` count in ticks)."""
    if sum(r.seconds for r in runs) < CPU_MIN_RUN_S:
        return None
    cpu = sum(r.server_cpu_s if which == "server" else r.client_cpu_s for r in runs)
    return cpu / sum(r.requests for r in runs) * 1e6


def median_interval(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """A distribution-free confidence interval of the median: the order statistics
    ``x(k)`` and ``x(n+1-k)`` for the largest ``k`` whose binomial tail, P(Binomial(n, 1/2)
    < k), is at most half of ``1 - confidence``. None when there are too few values."""
    ordered = sorted(values)
    n = len(ordered)
    k = tail = 0
    while k < n:
        tail += math.comb(n, k)
        if tail / 2**n > (1 - confidence) / 2:
            break
        k += 1
    return None if k == 0 else (ordered[k - 1], ordered[n - k])


@dataclass(frozen=True, slots=True)
class Verdict:
    """The goal judged from pairs of short runs: each pair's memory frames/s over its echo
    frames/s (a pair shares the machine's speed of the moment, which best against best does
    not), their median, and its confidence interval."""

    ratios: tuple[float, ...]
    """Memory over echo frames/s, pair by pair, in run order."""
    interval: tuple[float, float] | None
    """The median's ``CONFIDENCE`` interval; None with too few pairs (quick mode)."""

    @property
    def ratio(self) -> float:
        """The median of the pairs' ratios: the figure judged."""
        return statistics.median(self.ratios)

    @property
    def word(self) -> str:
        if self.interval is None:
            return "not judged"  # quick mode: one short pair says nothing steady
        low, high = self.interval
        if low >= GOAL:
            return "met"
        if high < GOAL:
            return "NOT met"
        return "inconclusive"


def judge(pairs: Sequence[tuple[Run, Run]]) -> Verdict:
    """The goal's verdict from (echo, memory) pairs of runs."""
    ratios = tuple(m.frames_per_s / e.frames_per_s for e, m in pairs)
    return Verdict(ratios, median_interval(ratios))


def _cpu_ratio(pairs: Sequence[tuple[Run, Run]]) -> float | None:
    """The median, pair by pair, of the echo's server CPU per request over the memory store's."""
    ratios = [
        (e.server_cpu_s / e.requests) / (m.server_cpu_s / m.requests)
        for e, m in pairs
        if e.server_cpu_s > 0 and m.server_cpu_s > 0
    ]
    return statistics.median(ratios) if ratios else None


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _table(m: Measured) -> str:
    echo = m.best("echo")
    limits = ServerConfig()  # the defaults the servers here run with
    labels = {
        "echo": "bare websockets echo (baseline)",
        "memory": "reference server, memory store",
        "sqlite": "reference server, SQLite store",
        "redis": "reference server, Redis store (one node, redis-server on loopback)",
    }
    repeats = len(m.runs["echo"])
    ratio = m.best("memory").frames_per_s / echo.frames_per_s
    verdict = judge(m.pairs)
    per_pair = ", ".join(f"{r:.2f}x" for r in verdict.ratios)
    if verdict.interval is None:
        judged = "too few pairs (quick mode) for an interval, so no verdict"
    else:
        low, high = verdict.interval
        judged = (
            f"{CONFIDENCE:.0%} confidence interval of the median {low:.3f}x-{high:.3f}x: met "
            f"when it lies at or above {GOAL}x, missed when below, inconclusive when across"
        )
    placement = (
        "servers and client pinned to separate CPUs, swapped from pair to pair"
        if m.pinned
        else "not pinned (fewer than two CPUs, or no sched_setaffinity)"
    )
    cpu = _cpu_ratio(m.pairs)
    cpu_ratio = (
        f" By server CPU per request (the median pair's echo over memory): {cpu:.3f}x."
        if cpu
        else ""
    )
    lines = [
        f"{echo.requests} requests, {WINDOW} in flight ({CONNECTIONS} connections, "
        f"{PER_CONNECTION} each); a reply is {m.chunks} frames (reply chunks, measured from a "
        f"real reply; the echo sends {m.chunks} frames of {m.size} bytes). Best of {repeats} "
        "run(s) after an untimed one, runs interleaved; CPU is over the timed part of every "
        "run (the server's from the scheduler's per-thread counts, the client's "
        "`process_time`); for the Redis store, server CPU is the node's and redis-server's "
        "together.",
        "",
        "| server | requests/s | reply frames/s | vs echo | reply frames/s, every run "
        "| server CPU µs/request | client CPU µs/request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in m.runs.items():
        run = m.best(name)
        every = " / ".join(f"{r.frames_per_s:,.0f}" for r in runs)
        lines.append(
            f"| {labels[name]} | {run.requests_per_s:,.0f} | {run.frames_per_s:,.0f} "
            f"| {run.frames_per_s / echo.frames_per_s:.2f}x | {every} "
            f"| {_us(_cpu_per_request(runs, 'server'))} "
            f"| {_us(_cpu_per_request(runs, 'client'))} |"
        )
    lines += [
        "",
        f"Goal (memory store >= {GOAL}x echo): **{verdict.word}** ({verdict.ratio:.3f}x, the "
        f"median of {len(m.pairs)} pair(s) of {m.pairs[0][0].requests}-request runs, an echo run "
        f"and a memory run each, in alternating order, {placement}; {judged}; pair by pair: "
        f"{per_pair}; the table's best against best: {ratio:.3f}x).{cpu_ratio}",
        "",
        "Reference client: `ClientProtocol` driven directly over a `websockets` connection, "
        "one cumulative ack per reply (sent with the next request, the two in one socket write "
        "since 2026-12-02, as `AsyncClient` sends them), so that the client's own "
        "work stays out of the server's figure. The window is spread over "
        f"{CONNECTIONS} connections because of the server's flood limit "
        f"({limits.max_frames_per_s:g} frames/s, burst {limits.frame_burst}, close 1008; acks "
        "and pongs are free, §12.1): one connection cannot carry more than "
        f"{limits.max_frames_per_s:g} requests/s, whatever the server's speed.",
        "",
        "Server logs: "
        + (
            "clean (nothing at WARNING or above)."
            if not m.problems
            else f"{len(m.problems)} problem line(s), first: `" + m.problems[0][:200] + "`"
        ),
    ]
    return "\n".join(lines)


def run(quick: bool = False) -> tuple[Measured, str]:
    """Measure; return every run and a markdown table."""
    measured = asyncio.run(_measure(quick))
    return measured, _table(measured)


def main(argv: Sequence[str] = ()) -> str:
    """Run and return the markdown table."""
    return run(quick="--quick" in argv)[1]
