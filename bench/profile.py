"""Profiles of the harness's client and of the reference server under load, with py-spy.

Two loads, each from ``bench.peer_client --target reference`` (the ``ReferenceDriver`` with a
``History`` per client, every operation recorded, the delivery check at the end) against a
reference server child process (memory store, ``--chunk-delay 0``, flood limits raised):

- **turns** (as in the throughput and overhead benchmarks): ``TURN_CLIENTS`` clients, each
  making ``turns`` chat turns one after the other;
- **storm** (as in the storm benchmark, without the proxy): ``STORM_CLIENTS`` clients arriving
  at once, each connecting, making one turn and disconnecting, then ``cycles - 1`` times
  resuming, making one turn and disconnecting.

py-spy samples both processes at ``RATE`` Hz while the load runs (``record -f raw``: folded
stacks, idle threads left out). The tables give each profile's top functions by own time (the
innermost frame of a sample) and, among this project's functions, by total time (the function
anywhere on the stack), each as a share of the samples taken while the process was busy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reference_server.launcher import ServerProcess

from .throughput import BenchError, credentials

ROOT = Path(__file__).resolve().parents[1]
RATE = 250
TOP_SELF = 12
TOP_TOTAL = 10
TURN_CLIENTS = 16
STORM_CLIENTS = 1000
SERVER_ARGS = [
    "--store", "memory", "--chunk-delay", "0",
    "--max-frames-per-s", "1000000", "--frame-burst", "1000000",
]  # fmt: skip
TOKEN_ENV = "BENCH_PROFILE_TOKEN"
OURS = ("harness/", "reference_server/", "bench/")


def py_spy() -> str | None:
    """The py-spy executable (in this venv or on PATH), None if there is none."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    """Folded stacks of one process under one load: sample counts per stack."""

    stacks: Counter[tuple[str, ...]] = field(default_factory=Counter)

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def top_self(self, n: int) -> list[tuple[str, int]]:
        own: Counter[str] = Counter()
        for stack, count in self.stacks.items():
            own[stack[-1]] += count
        return own.most_common(n)

    def top_total(self, n: int) -> list[tuple[str, int]]:
        total: Counter[str] = Counter()
        for stack, count in self.stacks.items():
            for frame in set(stack):
                if any(part in frame for part in OURS):
                    total[frame] += count
        # The entry points (run, main, the task's top coroutine) hold every sample: skip those
        # that are on more than 95% of the stacks, they say nothing.
        return [(f, c) for f, c in total.most_common() if c < 0.95 * self.samples][:n]


def _frame(raw: str) -> str:
    """``name (path:line)`` to ``name (short path)``: aggregated over lines."""
    name, _, where = raw.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def parse(text: str) -> Profile:
    """py-spy's raw (folded) output: ``frame;frame;... count`` per line."""
    profile = Profile()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = tuple(_frame(f) for f in stack.split(";") if f and not f.startswith("process "))
        if frames:
            profile.stacks[frames] += int(count)
    return profile


@dataclass(frozen=True, slots=True)
class Load:
    name: str
    args: list[str]


async def _record(spy: str, out: Path, pid: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
        "--output", str(out), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def _stop(spy: asyncio.subprocess.Process) -> None:
    """py-spy writes its output on SIGINT."""
    if spy.returncode is None:
        spy.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(30):
            await spy.wait()
    except TimeoutError:
        spy.kill()
        await spy.wait()


async def profile_load(spy: str, load: Load, workdir: Path) -> tuple[Profile, Profile, str]:
    """(client profile, server profile, the client's result line) of one load."""
    creds = credentials()
    env = {**os.environ, TOKEN_ENV: creds.token}
    client_out, server_out = (
        workdir / f"{load.name}-client.txt",
        workdir / f"{load.name}-server.txt",
    )
    async with ServerProcess(SERVER_ARGS, env=creds.env, log_path=workdir / "server.log") as server:
        assert server.pid is not None
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.peer_client", "--target", "reference",
            "--url", server.url, "--token-env", TOKEN_ENV, "--timeout", "240", *load.args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
        spies = [
            await _record(spy, client_out, client.pid),
            await _record(spy, server_out, server.pid),
        ]
        try:
            async with asyncio.timeout(300):
                output, _ = await client.communicate()
        finally:
            if client.returncode is None:
                client.kill()
                await client.wait()
            for s in spies:
                await _stop(s)
    result = output.decode(errors="replace").strip().splitlines()
    if client.returncode != 0 or not result or '"failed": 0' not in result[-1]:
        raise BenchError(f"the {load.name} load failed: {result[-3:]}")
    profiles = []
    for out in (client_out, server_out):
        text = out.read_text(errors="replace") if out.exists() else ""
        profiles.append(parse(text))
    return profiles[0], profiles[1], result[-1]


@dataclass
class Measured:
    skipped: str | None = None
    loads: list[Load] = field(default_factory=list)
    profiles: dict[tuple[str, str], Profile] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)


def loads(quick: bool) -> list[Load]:
    turns = 60 if quick else 400
    storm = 200 if quick else STORM_CLIENTS
    cycles = 2 if quick else 4
    return [
        Load("turns", ["--clients", str(TURN_CLIENTS), "--rate", "1000", "--turns", str(turns)]),
        Load(
            "storm",
            ["--clients", str(storm), "--rate", "100000", "--turns", "1", "--cycles", str(cycles)],
        ),
    ]


async def _measure(quick: bool) -> Measured:
    measured = Measured()
    spy = py_spy()
    if spy is None:
        measured.skipped = "py-spy not found (scripts/setup installs it with the dev extras)"
        return measured
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        for load in loads(quick):
            measured.loads.append(load)
            client, server, result = await profile_load(spy, load, Path(tmp))
            measured.profiles[(load.name, "client")] = client
            measured.profiles[(load.name, "server")] = server
            measured.results[load.name] = result
    return measured


def _rows(entries: list[tuple[str, int]], samples: int) -> list[str]:
    return [
        f"| {share * 100:.1f}% | `{frame.replace('|', '/')}` |"
        for frame, count in entries
        for share in [count / samples if samples else 0.0]
    ]


def _table(m: Measured) -> str:
    if m.skipped:
        return f"**Skipped**: {m.skipped}."
    lines = [
        f"py-spy {RATE} Hz, idle left out; each load's client is `bench.peer_client --target "
        "reference` (the harness's `ReferenceDriver` + `History`), the server the reference "
        "server (memory store, `--chunk-delay 0`). Shares are of the samples taken while the "
        "process was busy.",
    ]
    for load in m.loads:
        lines += ["", f"**{load.name}** (`{' '.join(load.args)}`): `{m.results[load.name]}`"]
        for who in ("client", "server"):
            p = m.profiles[(load.name, who)]
            lines += [
                "",
                f"{load.name}, {who}: {p.samples:,} samples. Own time:",
                "",
                "| own | function (file) |",
                "|---:|---|",
                *_rows(p.top_self(TOP_SELF), p.samples),
                "",
                f"{load.name}, {who}, this project's functions by total time:",
                "",
                "| total | function (file) |",
                "|---:|---|",
                *_rows(p.top_total(TOP_TOTAL), p.samples),
            ]
    return "\n".join(lines)


def run(quick: bool = False) -> tuple[Measured, str]:
    """Profile; return the profiles and markdown tables."""
    measured = asyncio.run(_measure(quick))
    return measured, _table(measured)


def main(argv: Sequence[str] = ()) -> str:
    """Run and return the markdown tables."""
    return run(quick="--quick" in argv)[1]
