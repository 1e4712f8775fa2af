"""Reconnection storm: every client of a server loses its connection at once and resumes at once.

Topology: the reference server (memory store; default options but a 60 s handshake timeout
and a 180 s full window, see below) in a child process; Toxiproxy servers (the harness's
``ToxiproxyServer``, one per share of the clients that its open-files limit can carry), each
with one proxy in front of it; ``N``
``AsyncClient`` clients (10,000; quick: 200) held by client processes of their own
(``bench.storm_worker``, one per 2,500 clients: a single event loop cannot make 10,000
handshakes in the time a storm allows, and two cores want more than one), each connected
through the proxy with a session on which it has chatted once. A storm's command goes to every
client process at once; its time runs to the last completion in any of them
(``time.monotonic()``, one clock for the machine). The open-files limit is raised before
anything starts (the hard one too where permitted: 10,000 clients through a proxy are 20,000
sockets in Toxiproxy alone). The proxy is then disabled (Toxiproxy cuts every connection) and,
once the server has seen every connection go, enabled again; then every client calls
``resume()`` at the same moment (one ``asyncio.gather`` per process, no semaphore, no
pacing). A client's latency runs from its own call to its ``Attached`` event; the storm time
from the command to the last ``Attached``. After each storm every client chats once more; at
the end each client's delivered stream is checked: seqs 1..n exactly, no
``DuplicateDelivery``, no protocol error.

The baseline, in the same run and through the same proxy: while the clients are cut off, the
proxy is pointed at ``bench.echo_server`` (Toxiproxy restarts it on the same port) and ``N``
bare ``websockets`` ``connect()`` calls (the opening handshake only) go at once the same way;
then the proxy is pointed back at the reference server and the clients resume. The full
mode runs 3 rounds of each mode (below) and judges the goal on the median round.

Toxiproxy accepts a client and dials its upstream in one loop, one connection after the other
(``proxy.go``), so when the upstream's accept queue is full the dial's SYN is dropped and the
whole proxy waits for the SYN retransmission, about 1 s. Both Python servers listen with a
backlog of 4096 (asyncio's default of 100 caused exactly that). Each storm therefore counts the
kernel's ``TcpExt.ListenOverflows`` (``/proc/net/netstat``, this network namespace) around it,
and each round also runs both storms "paced": at most ``PACED`` connects or resumes in flight
(a semaphore; a latency then runs from the semaphore's grant), which keeps every accept queue
short, so the paced ratio is the CPU cost alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from harness.checkers import percentile
from harness.faults.toxiproxy_client import ToxiproxyClient
from harness.faults.toxiproxy_server import ToxiproxyServer
from reference_server.launcher import ServerProcess

from .echo_server import EchoServerProcess
from .throughput import BenchError, credentials, log_problems

T = TypeVar("T")
Mode = Literal["at once", "paced"]
GOAL = 2.0
"""The resume storm takes at most this many times the bare connect storm."""
PACED = 64
"""In-flight limit of the paced storms (and of the untimed setup)."""
OPEN_TIMEOUT_S = 60.0
HANDSHAKE_TIMEOUT_S = 60.0
FULL_WINDOW_S = 180.0
"""The server's full-replay window (default 30 s): at 10,000 clients the cut, the bare storm
and a paced resume storm take longer than 30 s, and resumes then came back ``degraded``."""
"""Both servers' handshake timeout (default 10 s): one Python process takes longer than 10 s
to answer 10,000 handshakes that arrive together, and its timeout then cut the last ones
(a run with the defaults: up to 2,576 of 10,000 bare connects failed, InvalidMessage)."""
STORM_TIMEOUT_S = 90.0
PHASE_TIMEOUT_S = 240.0
PROXY = "storm"
CLIENTS, QUICK_CLIENTS = 10_000, 200
"""Issue 15's goal: 10,000 clients (1,000 before it)."""
PER_WORKER = 2_500
MAX_WORKERS = 4
"""Client processes: one per 2,500 clients (10,000: four, two per core)."""
TOKEN_ENV = "BENCH_STORM_TOKEN"
ROOT = Path(__file__).resolve().parents[1]


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Raise this process's open-files limit towards ``wanted``: the soft limit up to the hard
    one, and the hard one too where the process may (root: up to ``fs.nr_open``); return
    (soft, hard) after. Children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # not permitted: keep the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
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
    workers: int = 1
    proxies: int = 1
    chat_failures: int = 0
    """Chats after a resume that failed (each then missing from its client's stream)."""


async def _set_proxy(api_url: str, upstream: str) -> None:
    """Point the proxy at ``upstream`` and enable it (Toxiproxy restarts it on its port)."""
    async with httpx.AsyncClient(base_url=api_url, trust_env=False, timeout=10) as http:
        for body in ({"upstream": upstream}, {"enabled": True}):
            response = await http.post(f"/proxies/{PROXY}", json=body)
            response.raise_for_status()


class Fleet:
    """The client processes (``bench.storm_worker``): each holds its share of the clients and
    answers one JSON line per command; a command goes to all of them at once."""

    def __init__(self, urls: list[str], token: str, clients: int, workers: int) -> None:
        self.urls, self.token = urls, token
        base, extra = divmod(clients, workers)
        self.shares = [base + (i < extra) for i in range(workers)]
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Fleet:
        env = {**os.environ, TOKEN_ENV: self.token}
        try:
            for i, share in enumerate(self.shares):
                self.procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "bench.storm_worker",
                        "--url",
                        self.urls[i % len(self.urls)],
                        "--token-env",
                        TOKEN_ENV,
                        "--clients",
                        str(share),
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        env=env,
                        cwd=ROOT,
                        limit=2**26,
                    )
                )
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:  # end of stdin: each drops its clients and exits
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
        for proc in self.procs:
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def ask(self, op: str, timeout: float = PHASE_TIMEOUT_S, **args: object) -> list[Any]:
        """Send one command to every worker at once; their answers, in worker order."""
        line = (json.dumps({"op": op, **args}) + "\n").encode()
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(line)
        for proc in self.procs:
            assert proc.stdin is not None
            await proc.stdin.drain()

        async def answer(proc: asyncio.subprocess.Process) -> Any:
            assert proc.stdout is not None
            raw = await proc.stdout.readline()
            if not raw:
                raise BenchError(f"storm worker {proc.pid} exited (code {await proc.wait()})")
            found = json.loads(raw)
            if "error" in found:
                raise BenchError(f"storm worker {proc.pid}: {found['error']}")
            return found

        async with asyncio.timeout(timeout):
            return list(await asyncio.gather(*(answer(p) for p in self.procs)))

    async def storm(self, op: str, limit: int | None, **args: object) -> Storm:
        """One storm over every worker; its time runs to the last completion anywhere."""
        per_worker = None if limit is None else max(1, limit // len(self.procs))
        storm = Storm()
        overflows = listen_overflows()
        start = time.monotonic()
        answers = await self.ask(op, STORM_TIMEOUT_S + 30, limit=per_worker, **args)
        storm.overflows = listen_overflows() - overflows
        for found in answers:
            storm.latencies += found["latencies"]
            storm.outcomes.update(found["outcomes"])
        storm.seconds = max(a["last"] for a in answers) - start if storm.latencies else 0.0
        return storm


def per_proxy(fd_soft_limit: int) -> int:
    """Clients one Toxiproxy process can carry: two sockets each, some files to spare."""
    return max(1, (fd_soft_limit - 512) // 2)


def workers_for(clients: int) -> int:
    """One client process per ``PER_WORKER`` clients, at least one, at most ``MAX_WORKERS``."""
    return max(1, min(MAX_WORKERS, -(-clients // PER_WORKER)))


async def _measure(n: int, rounds: int) -> Measured:
    fd_limit = raise_fd_limit(4 * n + 1024)
    creds = credentials()
    measured = Measured(n, fd_limit=fd_limit, workers=workers_for(n))
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            server = await stack.enter_async_context(
                ServerProcess(
                    [
                        "--store",
                        "memory",
                        "--handshake-timeout",
                        f"{HANDSHAKE_TIMEOUT_S:g}",
                        "--full-window",
                        f"{FULL_WINDOW_S:g}",
                    ],
                    env=creds.env,
                    log_path=Path(tmp) / "memory.log",
                )
            )
            echo = await stack.enter_async_context(
                EchoServerProcess(frames=1, size=16, open_timeout=HANDSHAKE_TIMEOUT_S)
            )
            # One Toxiproxy process per share of the clients: each proxied connection is two
            # sockets there, and a process holds at most the open-files limit.
            toxiproxies = [
                await stack.enter_async_context(ToxiproxyServer())
                for _ in range(-(-n // per_proxy(fd_limit[0])))
            ]
            apis = [await stack.enter_async_context(ToxiproxyClient(t.url)) for t in toxiproxies]
            measured.proxies = len(apis)
            server_up = server.url.split("://", 1)[1].split("/", 1)[0]
            echo_up = echo.url.split("://", 1)[1].split("/", 1)[0]
            base = f"http://{server_up}"
            ports = [(await api.create_proxy(PROXY, server_up)).port for api in apis]
            fleet = await stack.enter_async_context(
                Fleet([f"ws://127.0.0.1:{p}/ws" for p in ports], creds.token, n, measured.workers)
            )

            async def point_at(upstream: str) -> None:
                for api, toxiproxy in zip(apis, toxiproxies, strict=True):
                    await api.set_enabled(PROXY, False)
                    await _set_proxy(toxiproxy.url, upstream)

            async def cut() -> None:
                for api in apis:
                    await api.set_enabled(PROXY, False)

            async def all_gone() -> bool:
                if sum(a["connected"] for a in await fleet.ask("connected")):
                    return False
                return await metric(base, "ws_connections") == 0

            async with asyncio.timeout(PHASE_TIMEOUT_S + rounds * 2 * 4 * STORM_TIMEOUT_S):
                await fleet.ask("setup")
                await asyncio.sleep(0.1)  # the batched acks go out
                takeovers = await metric(base, "ws_session_takeovers_total")
                modes: list[Mode] = ["at once", "paced"]
                for _ in range(rounds):
                    for mode in modes:
                        limit = None if mode == "at once" else PACED
                        await cut()
                        await until(all_gone, 60, "every connection to be seen as cut")
                        await point_at(echo_up)
                        bare = await fleet.storm("bare", limit)
                        await point_at(server_up)
                        resume = await fleet.storm("resume", limit)
                        measured.rounds.append(Round(mode, bare, resume))
                        # One more chat each: the stream goes on after the resume.
                        for found in await fleet.ask("chat"):
                            measured.chat_failures += found["failed"]
                            measured.examples += found["examples"]
                for found in await fleet.ask("check"):
                    measured.checked += found["checked"]
                    measured.losses += found["losses"]
                    measured.duplicates += found["duplicates"]
                    measured.errors += found["errors"]
                    measured.examples += found["examples"]
                measured.takeovers = await metric(base, "ws_session_takeovers_total") - takeovers
                await fleet.ask("bye")
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
    intro = (
        f"{m.clients:,} clients to the reference server (memory store; handshake timeout "
        f"{HANDSHAKE_TIMEOUT_S:g} s and full window {FULL_WINDOW_S:g} s, the rest default) "
        f"through {m.proxies} Toxiproxy process(es) (one proxy each, each a share of the "
        "clients: a proxied connection is two of its sockets), held by "
        f"{m.workers} client process(es) "
        "(`bench.storm_worker`, each its share; a storm's command goes to all at once and its "
        "time runs to the last completion in any of them). A round: the proxy disabled (every "
        "connection cut); once the server has seen them go, the proxy pointed at the echo "
        f"server for the baseline ({m.clients:,} bare `connect()`), then back at the reference "
        f"server for the storm ({m.clients:,} `AsyncClient.resume()`), then one more chat per "
        "client. **at once**: one `gather` per process, no semaphore; **paced**: at most "
        f"{PACED} in flight in all. Open timeout {OPEN_TIMEOUT_S:g} s. Milliseconds; a latency "
        "runs from the call (paced: from the semaphore's grant) to the open connection (bare) "
        "or the `Attached` event (resume). Overflows: SYNs the kernel dropped at a full accept "
        "queue during the storm (`TcpExt.ListenOverflows`)."
    )
    lines = [
        intro,
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
    clean = m.losses == 0 and m.duplicates == 0 and m.errors == 0 and m.chat_failures == 0
    lines += [
        "",
        f"Goal (the resume storm at most {GOAL:g}x the bare connect storm), every client at "
        f"once: {_verdict(at_once)}. Paced, for the CPU cost alone: {_verdict(paced)}. "
        f"Every resume `full`: {'yes' if all_back else 'NO'}.",
        "",
        f"- Delivery, checked at the end over every client's whole stream (one chat before the "
        f"first storm and one after each): {m.checked} clients, {m.losses} with lost or "
        f"out-of-order seqs, {m.duplicates} `DuplicateDelivery` events, {m.errors} protocol "
        f"errors, {m.chat_failures} chats after a resume that failed: "
        f"**{'clean' if clean else 'NOT clean'}**."
        + (f" First: {'; '.join(m.examples[:3])}" if m.examples else ""),
        f"- Session takeovers during the run: {m.takeovers:.0f}.",
        "- Toxiproxy dials the upstream in its accept loop, one connection at a time: a storm "
        "that fills the upstream's accept queue loses a SYN, and the whole proxy waits about 1 s "
        "for its retransmission (the latencies then come in 1 s steps). Both Python servers "
        "listen with a backlog of 4096; overflows above count any such stall.",
        f"- Open files limit of the benchmark process: {m.fd_limit[0]} (hard {m.fd_limit[1]}, "
        "raised where permitted); children (servers, Toxiproxy, client processes) inherit it.",
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
    measured = asyncio.run(_measure(QUICK_CLIENTS if quick else CLIENTS, 1 if quick else 3))
    return measured, _table(measured)


def main(argv: Sequence[str] = ()) -> str:
    """Run and return the markdown table."""
    return run(quick="--quick" in argv)[1]
