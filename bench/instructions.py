"""Instructions per request under valgrind: a figure this machine's drifting speed does not move.

``python -m bench.instructions [TREE...]`` (default: this tree) counts the user-space
instructions (``valgrind --tool=cachegrind --cache-sim=no``) that the throughput benchmark's
load costs per request: the server's (the reference server with the memory store, from each
TREE) and the client's (``bench.throughput``'s reference client, from each TREE), beside the
same for the baseline, ``bench.echo_server`` and its client (from this tree). Each figure is
the difference between a run of ``LONG`` requests and one of ``SHORT``, over ``LONG - SHORT``:
start-up, imports and warm-up cancel out; repeated, a figure moved by 0.2% (2026-12-02), where
wall and CPU time on this machine drift 1.7x within seconds.

Kernel time is not counted: the echo's four socket writes a request against the reference
server's one cost CPU time these figures do not show. Read them beside the throughput
benchmark, for before-and-after comparisons of one side's own work, not instead of it.

A TREE is a source checkout (``git archive HEAD~1 | tar -x -C /tmp/before``); its server runs
with it as working directory and ``PYTHONPATH``, the other side of each load from this tree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from reference_server.launcher import ServerProcess

from .echo_server import EchoServerProcess
from .throughput import (
    BenchError,
    Credentials,
    credentials,
    measure_reply,
    reference_server,
    run_echo,
    run_reference,
)

HERE = Path(__file__).resolve().parents[1]
SHORT, LONG = 400, 2000
WARMUP = 200
TIMEOUT_S = 600.0
CLIENT_PROGRAM = f"""
import asyncio, os, sys
from bench.throughput import run_echo, run_reference
url, kind, n, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
async def main():
    if kind == "echo":
        await run_echo(url, {WARMUP}, chunks=chunks)
        await run_echo(url, n, chunks=chunks)
    else:
        token = os.environ["BENCH_INSTRUCTIONS_TOKEN"]
        await run_reference(url, token, {WARMUP}, chunks=chunks)
        await run_reference(url, token, n, chunks=chunks)
asyncio.run(main())
"""


def valgrind() -> str:
    """The valgrind executable, or a BenchError saying how to install it."""
    found = shutil.which("valgrind")
    if found is None:
        raise BenchError("valgrind not found: install it (apt-get install valgrind)")
    return found


def _cachegrind(out: Path) -> list[str]:
    return [valgrind(), "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"]


def _total(out: Path) -> int:
    found = re.search(r"^summary: (\d+)$", out.read_text(), re.MULTILINE)
    if found is None:
        raise BenchError(f"no instruction count in {out}")
    return int(found.group(1))


def _env(tree: Path, creds: Credentials) -> dict[str, str]:
    return {**creds.env, "PYTHONPATH": str(tree)}


async def _server_run(
    tree: Path, kind: str, requests: int, creds: Credentials, chunks: int, size: int
) -> int:
    """Instructions of one server process from start to stop, ``requests`` timed requests."""
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        out = Path(tmp) / "cachegrind.out"
        if kind == "echo":
            module, args = "bench.echo_server", ["--frames", str(chunks), "--size", str(size)]
        else:
            module = "reference_server"
            args = ["--store", "memory", "--chunk-delay", "0"]
            args += ["--handshake-timeout", "60"]  # handshakes are slow under valgrind
        server = ServerProcess(
            args,
            module=module,
            cwd=tree,
            env=_env(tree, creds),
            start_timeout=TIMEOUT_S,
            log_path=Path(tmp) / "server.log",
            prefix=_cachegrind(out),
        )
        try:
            url = await server.start()
            if kind == "echo":
                await run_echo(url, WARMUP, chunks=chunks)
                await run_echo(url, requests, chunks=chunks)
            else:
                await run_reference(url, creds.token, WARMUP, chunks=chunks)
                await run_reference(url, creds.token, requests, chunks=chunks)
        finally:
            await server.stop(TIMEOUT_S)  # SIGTERM: valgrind writes its counts as it exits
        return _total(out)


def _client_run(
    tree: Path, url: str, kind: str, requests: int, creds: Credentials, chunks: int
) -> int:
    """Instructions of one client process from ``tree`` driving ``requests`` requests."""
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        out = Path(tmp) / "cachegrind.out"
        argv = [*_cachegrind(out), sys.executable, "-c", CLIENT_PROGRAM, url, kind]
        env = {**os.environ, **_env(tree, creds), "BENCH_INSTRUCTIONS_TOKEN": creds.token}
        done = subprocess.run(
            [*argv, str(requests), str(chunks)],
            cwd=tree, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"{kind} client from {tree} failed: {done.stderr[-500:]}")
        return _total(out)


async def _server_per_request(
    tree: Path, kind: str, creds: Credentials, chunks: int, size: int
) -> float:
    """(a LONG run's instructions - a SHORT run's) / (LONG - SHORT), server side."""
    short = await _server_run(tree, kind, SHORT, creds, chunks, size)
    long = await _server_run(tree, kind, LONG, creds, chunks, size)
    return (long - short) / (LONG - SHORT)


async def _client_per_request(
    tree: Path, url: str, kind: str, creds: Credentials, chunks: int
) -> float:
    """As ``_server_per_request``, client side."""
    short = await asyncio.to_thread(_client_run, tree, url, kind, SHORT, creds, chunks)
    long = await asyncio.to_thread(_client_run, tree, url, kind, LONG, creds, chunks)
    return (long - short) / (LONG - SHORT)


async def measure(trees: Sequence[Path]) -> list[tuple[str, float, float]]:
    """(label, server instructions/request, client instructions/request): the echo first."""
    creds = credentials()
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        async with reference_server("memory", creds, Path(tmp), "memory") as memory:
            chunks, size = await measure_reply(memory.url, creds.token)
            async with EchoServerProcess(frames=chunks, size=size) as echo:
                rows = [
                    (
                        "bare websockets echo (baseline, this tree)",
                        await _server_per_request(HERE, "echo", creds, chunks, size),
                        await _client_per_request(HERE, echo.url, "echo", creds, chunks),
                    )
                ]
                for tree in trees:
                    rows.append(
                        (
                            f"reference server, memory store ({tree})",
                            await _server_per_request(tree, "memory", creds, chunks, size),
                            await _client_per_request(tree, memory.url, "reference", creds, chunks),
                        )
                    )
    return rows


def table(rows: list[tuple[str, float, float]]) -> str:
    """The counts as markdown, each beside the echo's."""
    _, echo_server, echo_client = rows[0]
    lines = [
        f"User-space instructions per request (valgrind cachegrind; a {LONG}-request run minus "
        f"a {SHORT}-request one), the throughput benchmark's load.",
        "",
        "| target | server instructions/request | echo over it | client instructions/request "
        "| echo over it |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, server, client in rows:
        lines.append(
            f"| {label} | {server:,.0f} | {echo_server / server:.3f}x | {client:,.0f} "
            f"| {echo_client / client:.3f}x |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("trees", nargs="*", type=Path, help="source trees (default: this one)")
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in args.trees] or [HERE]
    try:
        valgrind()
        print(table(asyncio.run(measure(trees))))
    except BenchError as exc:
        print(f"bench.instructions: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
