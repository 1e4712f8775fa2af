"""The peer: Artillery and the harness drive the same load against the same servers, one run.

Artillery 2.0.34 (its WebSocket engine, ``engine: ws``; installed by ``scripts/setup`` into
``.tools/artillery/`` from ``bench/artillery/package-lock.json``) and the harness's side
(``bench.peer_client``: the ``ReferenceDriver`` with a ``History`` per client, every operation
recorded and the delivery check run over it) each run as a child process of this one, started
the same way, against the same server child process:

- **echo**: ``bench.echo_server`` answering each frame with ``FRAMES`` frames;
- **reference**: the reference server (memory store, ``--chunk-delay 0``), where a turn is a
  ``user_message`` answered by its reply chunks and the server's ack (``FRAMES`` frames in all,
  as a real turn of this agent brings them: Artillery waits for exactly that many; were the
  shape to change, its waits would time out and show as errors).

A simulated client (an Artillery virtual user) connects (on the reference server: ``hello``,
then the ``welcome``), makes ``TURNS`` turns (one frame sent, ``FRAMES`` received) and
disconnects; a reconnect is the next client. Clients arrive at a fixed rate (Artillery's
``arrivalRate``; the harness's side starts one every ``1/rate`` seconds).

CPU is user + system time of the child from ``os.wait4`` (the whole process: Artillery's main
thread and its worker thread; the harness's interpreter), and memory its peak resident set
(``ru_maxrss``). Both tools have a fixed cost (Node or Python starting, modules loading), so a
figure per client is a difference between two runs of the same tool: ``small`` and ``large``
clients, the same turns; and a figure per message between ``large`` at ``TURNS`` and at
``4 * TURNS`` turns per client. Messages are frames sent plus frames received.

The ramp: against the reference server, each tool holds ever more clients (each connects,
then stays ``hold`` seconds, so that all are connected at once), a step passing when every
client connected and none failed; it stops at the first failing step or at the last. Memory per
client is the peak-RSS difference between the largest and the smallest step passed.

Artillery does not check what arrives (each ``wait`` step takes any one frame); the harness
side checks every client's whole stream (dense positions, no loss, no duplicate). Artillery's
frame counts are its own counters; the harness side's on the reference server are ``FRAMES``
per completed turn (the driver waits for the final chunk, not for a count of frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reference_server.launcher import ServerProcess

from .echo_server import EchoServerProcess
from .storm import raise_fd_limit
from .throughput import BenchError, Credentials, credentials, log_problems

ROOT = Path(__file__).resolve().parents[1]
ARTILLERY_DIR = ROOT / ".tools" / "artillery"
ARTILLERY_BIN = ARTILLERY_DIR / "node_modules" / ".bin" / "artillery"
ARTILLERY_VERSION = "2.0.34"
FRAMES = 5
"""Frames a reference-server chat turn brings: 4 reply chunks and the server's ack."""
TURNS = 5
GOAL = 1.0
"""The harness's CPU per simulated client at most this many times Artillery's."""
SERVER_ARGS = [
    "--store",
    "memory",
    "--chunk-delay",
    "0",
    "--max-sessions",
    "100000",
    "--max-connections",
    "50000",
    "--heartbeat-interval",
    "60",
    "--heartbeat-timeout",
    "120",
]
"""A long heartbeat: Artillery answers no protocol ping (a held client would be timed out)."""
TOKEN_ENV = "BENCH_PEER_TOKEN"
Tool = Literal["artillery", "harness"]
Target = Literal["echo", "reference"]
TOOLS: tuple[Tool, ...] = ("artillery", "harness")
TARGETS: tuple[Target, ...] = ("echo", "reference")


def artillery_missing() -> str | None:
    """Why Artillery cannot run here (None: it can)."""
    if shutil.which("node") is None:
        return "node not found (Node.js 18 or newer and npm, then scripts/setup)"
    manifest = ARTILLERY_DIR / "node_modules" / "artillery" / "package.json"
    if not ARTILLERY_BIN.exists() or not manifest.exists():
        return f"Artillery not installed in {ARTILLERY_DIR} (scripts/setup installs it with npm)"
    found = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    if found != ARTILLERY_VERSION:
        return (
            f"Artillery {found} in {ARTILLERY_DIR}, not {ARTILLERY_VERSION} (re-run scripts/setup)"
        )
    return None


# --- one child process ------------------------------------------------------------------------


@dataclass
class Run:
    """One run of one tool: its load, what it reported, and what it cost."""

    tool: Tool
    target: Target
    clients: int
    turns: int
    hold: float
    cpu_s: float = 0.0
    peak_kib: int = 0
    wall_s: float = 0.0
    completed: int = 0
    failed: int = 0
    sent: int = 0
    received: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return self.completed == self.clients and self.failed == 0 and not self.errors

    @property
    def messages(self) -> int:
        return self.sent + self.received


def _spawn(argv: list[str], out: Any, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    # Popen returns once the child is forked; the wait happens in a thread (os.wait4).
    return subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd
    )


async def _child(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> tuple[int, str, float, float, int]:
    """Run ``argv`` to its end (killed after ``timeout``); (status, stdout, cpu s, wall s,
    peak RSS KiB) from ``os.wait4`` on it."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = _spawn(argv, out, env, cwd)
        waited = asyncio.ensure_future(asyncio.to_thread(os.wait4, proc.pid, 0))
        try:
            _, status, usage = await asyncio.wait_for(asyncio.shield(waited), timeout)
        except (TimeoutError, asyncio.CancelledError):
            proc.kill()
            await waited
            proc.returncode = -9
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    return proc.returncode, text, usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss


def _artillery_script(
    target: Target, url: str, token: str, rate: float, clients: int, turns: int, hold: float
) -> dict[str, Any]:
    """The Artillery script (engine ``ws``) of one run, as its docs and ``engine_ws`` read it."""
    flow: list[dict[str, Any]] = []
    config: dict[str, Any] = {
        "target": url,
        # Artillery takes whole seconds and arrivals per second (the sizes below divide).
        "phases": [{"duration": round(clients / rate), "arrivalRate": round(rate)}],
        "ws": {"perMessageDeflate": False},
    }
    if target == "reference":
        config["ws"]["headers"] = {"Authorization": f"Bearer {token}"}
        flow.append(
            {
                "send": {
                    "payload": '{"type":"hello","versions":[1,2]}',
                    "match": {"json": "$.type", "value": "welcome"},
                }
            }
        )
    if hold:
        flow.append({"think": hold})
    if turns:
        turn: list[dict[str, Any]] = [
            {
                "send": '{"type":"user_message","id":"m{{ $loopElement }}",'
                '"seq":{{ $loopElement }},"text":"hello"}'
            }
        ]
        turn += [{"wait": {"capture": {"json": "$.type", "as": "t"}}}] * FRAMES
        flow.append({"loop": turn, "over": list(range(1, turns + 1))})
    return {"config": config, "scenarios": [{"engine": "ws", "flow": flow}]}


async def run_artillery(
    target: Target,
    url: str,
    token: str,
    rate: float,
    clients: int,
    turns: int,
    hold: float,
    workdir: Path,
    timeout: float,
) -> Run:
    run = Run("artillery", target, clients, turns, hold)
    script, report = workdir / "artillery.yml", workdir / "artillery.json"
    script.write_text(
        yaml.safe_dump(_artillery_script(target, url, token, rate, clients, turns, hold)),
        encoding="utf-8",
    )
    report.unlink(missing_ok=True)
    env = {**os.environ, "ARTILLERY_DISABLE_TELEMETRY": "true", "NO_COLOR": "1"}
    code, text, run.cpu_s, run.wall_s, run.peak_kib = await _child(
        [str(ARTILLERY_BIN), "run", "--quiet", "--output", str(report), str(script)],
        env,
        workdir,
        timeout,
    )
    if code != 0 or not report.exists():
        raise BenchError(f"artillery exited {code}: {text[-500:]}")
    counters: dict[str, int] = json.loads(report.read_text())["aggregate"]["counters"]
    run.completed = counters.get("vusers.completed", 0)
    run.failed = counters.get("vusers.failed", 0)
    run.sent = counters.get("websocket.messages_sent", 0)
    run.received = counters.get("websocket.messages_received", 0)
    run.errors = {k: v for k, v in counters.items() if k.startswith("errors.")}
    if counters.get("vusers.created", 0) != clients:
        run.errors["created"] = counters.get("vusers.created", 0)
    return run


async def run_harness(
    target: Target,
    url: str,
    token: str,
    rate: float,
    clients: int,
    turns: int,
    hold: float,
    workdir: Path,
    timeout: float,
) -> Run:
    run = Run("harness", target, clients, turns, hold)
    argv = [
        sys.executable, "-m", "bench.peer_client", "--target", target, "--url", url,
        "--token-env", TOKEN_ENV, "--rate", f"{rate:g}", "--clients", str(clients),
        "--turns", str(turns), "--frames", str(FRAMES), "--hold", f"{hold:g}",
        "--timeout", f"{timeout - 5:g}",
    ]  # fmt: skip
    env = {**os.environ, TOKEN_ENV: token}
    code, text, run.cpu_s, run.wall_s, run.peak_kib = await _child(argv, env, ROOT, timeout)
    lines = text.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise BenchError(f"bench.peer_client exited {code}: {text[-500:]}") from None
    run.completed, run.failed = result["completed"], result["failed"]
    run.sent, run.received = result["sent"], result["received"]
    run.errors = dict(result["errors"])
    if result["undelivered"]:
        run.errors["delivery check failed"] = result["undelivered"]
    return run


RUNNERS = {"artillery": run_artillery, "harness": run_harness}


# --- the benchmark ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    rate: float
    small: int
    large: int
    per_message: bool
    hold_rate: float
    steps: tuple[int, ...]
    targets: tuple[Target, ...]
    repeats: int
    """Cost runs per load and tool, interleaved; the one with the least CPU is kept."""


FULL = Sizes(100, 200, 1000, True, 500, (1000, 2500, 5000, 10_000), TARGETS, 2)
QUICK = Sizes(100, 100, 200, False, 200, (200,), ("echo",), 1)


@dataclass
class Measured:
    sizes: Sizes
    skipped: str | None = None
    cost: dict[tuple[Tool, Target, str], Run] = field(default_factory=dict)
    ramp: dict[Tool, list[Run]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    tools: tuple[Tool, ...] = TOOLS


@contextlib.asynccontextmanager
async def _server(target: Target, creds: Credentials, workdir: Path, name: str) -> Any:
    server: ServerProcess
    if target == "echo":
        server = EchoServerProcess(frames=FRAMES, size=100)
    else:
        server = ServerProcess(SERVER_ARGS, env=creds.env, log_path=workdir / f"{name}.log")
    async with server:
        yield server


async def _measure(quick: bool) -> Measured:
    sizes = QUICK if quick else FULL
    measured = Measured(sizes)
    measured.skipped = artillery_missing()
    if measured.skipped:
        measured.tools = ("harness",)
    raise_fd_limit(4 * max(sizes.steps) + 1024)  # children inherit it
    creds = credentials()
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        workdir = Path(tmp)
        for target in sizes.targets:
            async with _server(target, creds, workdir, f"cost-{target}") as server:
                loads = [("small", sizes.small, TURNS), ("large", sizes.large, TURNS)]
                if sizes.per_message:
                    loads.append(("messages", sizes.large, 4 * TURNS))
                for _ in range(sizes.repeats):
                    for label, clients, turns in loads:
                        for tool in measured.tools:  # interleaved: drift hits both alike
                            timeout = 60 + 2 * clients / sizes.rate
                            run = await RUNNERS[tool](
                                target, server.url, creds.token, sizes.rate, clients, turns,
                                0.0, workdir, timeout,
                            )  # fmt: skip
                            key = (tool, target, label)
                            kept = measured.cost.get(key)
                            if kept is None or run.cpu_s < kept.cpu_s:
                                measured.cost[key] = run
                if isinstance(server, ServerProcess) and target == "reference":
                    measured.problems += log_problems(server)
        for tool in measured.tools:
            measured.ramp[tool] = []
            for step, clients in enumerate(sizes.steps):
                arrival = clients / sizes.hold_rate
                hold = arrival + 2.0
                # A fresh server per step: sessions left by a step do not burden the next.
                async with _server("reference", creds, workdir, f"ramp-{tool}-{step}") as server:
                    run = await RUNNERS[tool](
                        "reference", server.url, creds.token, sizes.hold_rate, clients, 0, hold,
                        workdir, 60 + 2 * (arrival + hold),
                    )  # fmt: skip
                measured.ramp[tool].append(run)
                if not run.clean:
                    break
    return measured


# --- the table --------------------------------------------------------------------------------


def _per_client_us(m: Measured, tool: Tool, target: Target) -> float:
    small, large = m.cost[(tool, target, "small")], m.cost[(tool, target, "large")]
    return (large.cpu_s - small.cpu_s) / (large.clients - small.clients) * 1e6


def _per_message_us(m: Measured, tool: Tool, target: Target) -> float | None:
    more = m.cost.get((tool, target, "messages"))
    if more is None:
        return None
    large = m.cost[(tool, target, "large")]
    return (more.cpu_s - large.cpu_s) / (more.messages - large.messages) * 1e6


def _us(per_message: float | None) -> str:
    if per_message is None:
        return "-"
    if per_message <= 0:  # the extra turns cost less than the noise between the two runs
        return f"not resolved ({per_message:,.1f})"
    return f"{per_message:,.1f}"


def _errors(run: Run) -> str:
    if run.clean:
        return "none"
    parts = [f"{run.failed} failed"] + [f"{v} {k}" for k, v in list(run.errors.items())[:3]]
    return "; ".join(parts).replace("|", "/")


def _held_per_client_kib(runs: list[Run]) -> float | None:
    passed = [r for r in runs if r.clean]
    if len(passed) < 2:
        return None
    low, high = passed[0], passed[-1]
    return (high.peak_kib - low.peak_kib) / (high.clients - low.clients)


def _table(m: Measured) -> str:
    s = m.sizes
    lines = [
        f"A simulated client: connect (reference server: `hello`, `welcome`), {TURNS} turns of "
        f"one frame sent and {FRAMES} received, disconnect; a reconnect is the next client. "
        f"Clients arrive at {s.rate:g}/s. Each tool is a child process; CPU is its user + "
        "system time (`os.wait4`), memory its peak RSS. Per client: the difference between "
        f"the {s.large:,}-client and the {s.small:,}-client runs over the {s.large - s.small:,} "
        "clients between"
        + (
            f"; per message (frames sent + received): between {4 * TURNS} and {TURNS} turns "
            f"per client at {s.large:,} clients"
            if s.per_message
            else " (this size measures no per-message figure)"
        )
        + f". Each run is the least CPU of {s.repeats} interleaved. The harness side "
        "records every operation in a `History` per client and checks each client's delivery.",
        "",
    ]
    if m.skipped:
        lines += [f"**Artillery rows skipped**: {m.skipped}.", ""]
    lines += [
        "| server | tool | run | clients | turns | CPU s | wall s | peak RSS MiB | messages "
        "| errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (tool, target, label), r in m.cost.items():
        lines.append(
            f"| {target} | {tool} | {label} | {r.clients:,} | {r.turns} | {r.cpu_s:.2f} "
            f"| {r.wall_s:.1f} | {r.peak_kib / 1024:,.0f} | {r.messages:,} | {_errors(r)} |"
        )
    lines += [
        "",
        "| server | tool | CPU µs per client | vs Artillery | CPU µs per message | vs Artillery |",
        "|---|---|---:|---:|---:|---:|",
    ]
    verdicts = []
    for target in s.targets:
        for tool in m.tools:
            per_client = _per_client_us(m, tool, target)
            per_message = _per_message_us(m, tool, target)
            ratio = ratio_msg = "-"
            if "artillery" in m.tools:
                base = _per_client_us(m, "artillery", target)
                ratio = f"{per_client / base:.2f}x"
                base_msg = _per_message_us(m, "artillery", target)
                if per_message is not None and per_message > 0 and base_msg and base_msg > 0:
                    ratio_msg = f"{per_message / base_msg:.2f}x"
                if tool == "harness":
                    verdicts.append(
                        f"{target}: **{'met' if per_client / base <= GOAL else 'NOT met'}** "
                        f"({per_client / base:.2f}x)"
                    )
            lines.append(
                f"| {target} | {tool} | {per_client:,.0f} | {ratio} "
                f"| {_us(per_message)} | {ratio_msg} |"
            )
    if verdicts:
        lines += [
            "",
            "Goal (the harness's CPU per simulated client at most Artillery's, while it records "
            "every operation): " + "; ".join(verdicts) + ".",
        ]
    lines += [
        "",
        f"**Ramp**: clients held at once against the reference server (each connects, then "
        f"stays connected; arrivals at {s.hold_rate:g}/s; a fresh server per step), steps "
        f"{', '.join(f'{n:,}' for n in s.steps)}; stops at the first step with an error.",
        "",
        "| tool | clients | passed | peak RSS MiB | CPU s | errors |",
        "|---|---:|---|---:|---:|---|",
    ]
    for tool, runs in m.ramp.items():
        for r in runs:
            lines.append(
                f"| {tool} | {r.clients:,} | {'yes' if r.clean else 'no'} "
                f"| {r.peak_kib / 1024:,.0f} | {r.cpu_s:.2f} | {_errors(r)} |"
            )
    lines.append("")
    for tool, runs in m.ramp.items():
        held = max((r.clients for r in runs if r.clean), default=0)
        bound = (
            " (the ramp's last step: the bound, not a limit found)"
            if (runs and runs[-1].clean and len(runs) == len(s.steps))
            else ""
        )
        per = _held_per_client_kib(runs)
        lines.append(
            f"- {tool}: most clients held {held:,}{bound}; memory per held client "
            + ("-" if per is None else f"{per:,.1f} KiB")
            + " (peak-RSS difference between the largest and smallest steps passed)."
        )
    lines.append(
        "- Reference server logs (the cost runs): "
        + (
            "clean (nothing at WARNING or above)."
            if not m.problems
            else f"{len(m.problems)} problem line(s), first: `{m.problems[0][:200]}`"
        )
    )
    return "\n".join(lines)


def run(quick: bool = False) -> tuple[Measured, str]:
    """Measure; return the figures and a markdown table."""
    measured = asyncio.run(_measure(quick))
    return measured, _table(measured)


def main(argv: Sequence[str] = ()) -> str:
    """Run and return the markdown table."""
    return run(quick="--quick" in argv)[1]
