"""Sessions: how many attached sessions one server process holds, and its memory per session.

The reference server (memory store, default options) runs in a child process; its resident
memory (``VmRSS`` of ``/proc/<pid>/status``) is read before and after ``N`` connections are
opened from this process, each with a session (``hello``, ``welcome``), all held open at once.
The client is the lightest real one: ``websockets.asyncio.client.connect`` (no compression, no
WebSocket pings) with ``ClientProtocol``, and one small task per connection that answers the
server's heartbeat pings (default heartbeat: a ping every 10 s, 30 s to answer), so that every
session stays attached while the others open. Connections are opened at most ``OPENING`` at a
time (the opening pace is not measured). The server's ``ws_sessions{state="attached"}`` gauge
is read after, to confirm it holds them all.

The baseline, in the same run: ``N`` bare ``websockets`` connections to ``bench.echo_server``
(no protocol, no session), its ``VmRSS`` before and after. Memory per session is
(after - before) / N, in KiB; both servers start with the same Python and ``websockets``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from reference_server.protocol import Attached, ClientProtocol

from .echo_server import EchoServerProcess
from .storm import raise_fd_limit
from .throughput import (
    CONNECT_OPTIONS,
    BenchError,
    cpu_seconds,
    credentials,
    log_problems,
    reference_server,
)

GOAL_SESSIONS = 10_000
GOAL_KIB = 64.0
OPENING = 100
OPEN_TIMEOUT_S = 30.0
PHASE_TIMEOUT_S = 240.0
SETTLE_S = 1.0
"""Pause after the last connection opens, before reading VmRSS."""
IDLE_S = 3.0
IDLE_QUICK_S = 1.0
"""How long the server's CPU use is measured while it holds every connection, idle."""


def rss_kib(pid: int | None) -> int:
    """Resident memory of a process (``VmRSS``), KiB; 0 where unavailable."""
    if pid is None:
        return 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Held:
    """Connections held open against one server, and the server's memory around them."""

    wanted: int
    held: int = 0
    before_kib: int = 0
    after_kib: int = 0
    open_s: float = 0.0
    first_tenth_s: float = 0.0
    last_tenth_s: float = 0.0
    open_cpu_s: float = 0.0
    idle_cpu: float = 0.0
    """The server's CPU use while idle with every connection held, in cores."""
    attached: float = float("nan")
    failures: Counter[str] = field(default_factory=Counter)
    first_error: str = ""

    @property
    def per_connection_kib(self) -> float:
        return (self.after_kib - self.before_kib) / self.held if self.held else float("nan")


async def _attached_sessions(base: str) -> float:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        text = (await http.get(f"{base}/metrics")).text
    match = re.search(r'^ws_sessions\{state="attached"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


async def _answer_pings(ws: ClientConnection, protocol: ClientProtocol) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for frame in ws:
            protocol.receive(frame)
            for out in protocol.data_to_send():
                await ws.send(out, text=True)


async def _open_session(url: str, token: str) -> tuple[ClientConnection, asyncio.Task[None]]:
    ws = await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        **{**CONNECT_OPTIONS, "open_timeout": OPEN_TIMEOUT_S},
    )
    try:
        protocol = ClientProtocol()
        protocol.hello()
        for frame in protocol.data_to_send():
            await ws.send(frame, text=True)
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            while True:
                events = protocol.receive(await ws.recv(decode=False))
                if any(isinstance(e, Attached) for e in events):
                    break
                if events:
                    raise BenchError(f"hello answered with {events}")
    except BaseException:
        ws.transport.abort()
        raise
    return ws, asyncio.create_task(_answer_pings(ws, protocol))


async def _hold(
    n: int,
    pid: int | None,
    url: str,
    token: str | None,
    base: str | None,
    idle_s: float,
    sockets: list[ClientConnection],
    tasks: list[asyncio.Task[None]],
) -> Held:
    """Open ``n`` connections (sessions when ``token``), at most ``OPENING`` at a time."""
    held = Held(n)
    gate = asyncio.Semaphore(OPENING)
    held.before_kib = rss_kib(pid)

    done: list[float] = []

    async def one() -> None:
        async with gate:
            if held.failures.total() >= OPENING:  # something limits us: stop trying
                return
            try:
                if token is None:
                    sockets.append(await connect(url, **{**CONNECT_OPTIONS, "open_timeout": 30}))
                else:
                    ws, task = await _open_session(url, token)
                    sockets.append(ws)
                    tasks.append(task)
            except Exception as exc:
                held.failures[type(exc).__name__] += 1
                held.first_error = held.first_error or f"{type(exc).__name__}: {exc}"
                return
            done.append(time.perf_counter())

    cpu, start = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    held.open_s = time.perf_counter() - start
    held.open_cpu_s = cpu_seconds(pid) - cpu
    if len(done) >= 10:
        tenth = len(done) // 10
        held.first_tenth_s = done[tenth - 1] - start
        held.last_tenth_s = done[-1] - done[-tenth - 1]
    await asyncio.sleep(SETTLE_S)
    cpu, idle = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(idle_s)
    held.idle_cpu = (cpu_seconds(pid) - cpu) / (time.perf_counter() - idle)
    held.held = sum(1 for ws in sockets if ws.close_code is None)
    held.after_kib = rss_kib(pid)
    if base is not None:
        held.attached = await _attached_sessions(base)
    return held


async def _release(sockets: list[ClientConnection], tasks: list[asyncio.Task[None]]) -> None:
    """Abort every connection (RST: fast, and no TIME_WAIT left on this side); empty the
    lists."""
    for ws in sockets:
        ws.transport.abort()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    sockets.clear()
    tasks.clear()
    await asyncio.sleep(0.2)


@dataclass(frozen=True, slots=True)
class Measured:
    echo: Held
    reference: Held
    fd_limit: tuple[int, int]
    problems: list[str]


async def _measure(n: int, idle_s: float) -> Measured:
    fd_limit = raise_fd_limit(n + 2048)
    creds = credentials()
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            echo_server = await stack.enter_async_context(EchoServerProcess(frames=1, size=16))
            server = await stack.enter_async_context(
                reference_server("memory", creds, Path(tmp), "memory")
            )
            base = "http://" + server.url.split("://", 1)[1].split("/", 1)[0]
            await asyncio.sleep(0.5)  # both servers settled after start-up
            sockets: list[ClientConnection] = []
            tasks: list[asyncio.Task[None]] = []
            # On error too: every client connection is aborted before the servers stop.
            stack.push_async_callback(_release, sockets, tasks)
            async with asyncio.timeout(PHASE_TIMEOUT_S):
                echo = await _hold(
                    n, echo_server.pid, echo_server.url, None, None, idle_s, sockets, tasks
                )
                await _release(sockets, tasks)
                reference = await _hold(
                    n, server.pid, server.url, creds.token, base, idle_s, sockets, tasks
                )
                await _release(sockets, tasks)
            await stack.aclose()
            return Measured(echo, reference, fd_limit, log_problems(server))


def _table(m: Measured) -> str:
    ref, echo = m.reference, m.echo
    lines = [
        f"{m.reference.wanted} connections wanted per server, opened from this process "
        f"({OPENING} at a time) and all held open at once; each server in its own child "
        f"process, its VmRSS read before and {SETTLE_S:g} s after the last opened.",
        "",
        "| server | held | VmRSS before (MiB) | VmRSS after (MiB) | KiB per connection "
        "| opened in (s) | first / last tenth (s) "
        "| server CPU opening (ms per connection) | server CPU idle, all held (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, h in (
        ("bare `websockets` echo, no session (baseline)", echo),
        ("reference server, memory store, one attached session each", ref),
    ):
        lines.append(
            f"| {label} | {h.held:,} | {h.before_kib / 1024:.1f} "
            f"| {h.after_kib / 1024:.1f} | {h.per_connection_kib:.1f} "
            f"| {h.open_s:.1f} | {h.first_tenth_s:.2f} / {h.last_tenth_s:.2f} "
            f"| {h.open_cpu_s / max(h.held, 1) * 1e3:.2f} | {h.idle_cpu:.2f} |"
        )
    reached = ref.held >= GOAL_SESSIONS and ref.attached >= GOAL_SESSIONS
    small = ref.per_connection_kib < GOAL_KIB
    verdict = "met" if reached and small else "NOT met"
    if ref.wanted < GOAL_SESSIONS and not ref.failures:
        verdict = f"not judged at {ref.wanted:,} (quick mode)"
    lines += [
        "",
        f"Goal ({GOAL_SESSIONS:,} sessions, under {GOAL_KIB:g} KiB each): **{verdict}** "
        f'({ref.held:,} held, the server\'s `ws_sessions{{state="attached"}}` gauge '
        f"{ref.attached:,.0f}; {ref.per_connection_kib:.1f} KiB per session, of which the bare "
        f"connection accounts for {echo.per_connection_kib:.1f} KiB; a session costs "
        f"{ref.per_connection_kib - echo.per_connection_kib:.1f} KiB more).",
        "",
        "- The first and last tenth show whether opening slows as sessions accumulate; the "
        "idle CPU is the sweeper (every 0.5 s, waking only connections with frames to send) "
        "and the protocol heartbeats (a ping per session every 10 s). An earlier profile of "
        "this benchmark found an O(N) scan per handshake and a sweeper that woke every "
        "writer; both were fixed before these figures.",
        f"- Open files limit of the benchmark process: {m.fd_limit[0]} (hard {m.fd_limit[1]}); "
        "children inherit it unchanged.",
    ]
    for label, h in (("echo", echo), ("reference", ref)):
        if h.failures:
            failed = ", ".join(f"{n} {k}" for k, n in h.failures.items())
            lines.append(f"- {label}: failures {failed}; first: `{h.first_error[:200]}`")
    lines.append(
        "- Server log: "
        + (
            "clean (nothing at WARNING or above)."
            if not m.problems
            else f"{len(m.problems)} problem line(s), first: `{m.problems[0][:200]}`"
        )
    )
    return "\n".join(lines)


def run(quick: bool = False) -> tuple[Measured, str]:
    """Measure; return the figures and a markdown table."""
    measured = asyncio.run(_measure(1_000, IDLE_QUICK_S) if quick else _measure(10_000, IDLE_S))
    return measured, _table(measured)


def main(argv: Sequence[str] = ()) -> str:
    """Run and return the markdown table."""
    return run(quick="--quick" in argv)[1]
