"""Before and after a change, in one run: the servers or the clients of several source trees.

``python -m bench.ab server TREE...`` starts one reference server from each tree (``python -m
reference_server`` with the tree as working directory) and drives the same loads against each
in turn, interleaved, with this tree's ``bench.peer_client``; ``python -m bench.ab client
TREE...`` runs each tree's ``bench.peer_client`` against the last tree's server. Each figure is
the least CPU time of ``--repeats`` runs (the server's, from ``/proc``; the client process's,
from ``os.wait4``). ``server`` mode also runs the throughput benchmark's load against each server
with its bare echo baseline (best reply frames/s, least server CPU per request), and the
resume benchmark's drop + resume cycles (p50 and p90 over every block).

``python -m bench.ab paired BEFORE AFTER [--store memory|sqlite|redis] [--pairs N]`` is for a
machine whose speed drifts between runs (two states about 1.7x apart within seconds were seen
on 2026-12-02): it runs the throughput load against the two servers in alternating order, pair
after pair of short runs, and gives the median of the AFTER/BEFORE ratios of frames/s and of
server CPU per request (``bench.throughput.cpu_seconds``: the scheduler's nanosecond run
time, where the kernel keeps it). Passing one tree twice measures the method's own noise.

A tree is a source checkout, e.g. ``git worktree add /tmp/before HEAD~1`` or ``git archive
HEAD~1 | tar -x -C /tmp/before``. The docs/performance.md section on profiles names the
commands whose figures it quotes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.checkers import percentile
from reference_server.launcher import ServerProcess
from reference_server.redis_process import RedisProcess

from .echo_server import EchoServerProcess
from .peer import _child
from .resume import measure_resumes
from .throughput import (
    BenchError,
    Run,
    cpu_seconds,
    credentials,
    measure_reply,
    run_echo,
    run_reference,
)

SERVER_ARGS = [
    "--store", "memory", "--chunk-delay", "0", "--max-frames-per-s", "1000000",
    "--frame-burst", "1000000", "--max-sessions", "100000",
]  # fmt: skip
LOADS = {
    "storm": ["--clients", "500", "--rate", "100000", "--turns", "1", "--cycles", "3"],
    "turns": ["--clients", "16", "--rate", "1000", "--turns", "300"],
}
RESUME_CYCLES = 200
TOKEN_ENV = "BENCH_AB_TOKEN"
HERE = Path(__file__).resolve().parents[1]


async def _client(tree: Path, url: str, token: str, load: list[str]) -> float:
    """CPU seconds of one ``bench.peer_client`` run from ``tree``."""
    argv = [
        sys.executable, "-m", "bench.peer_client", "--target", "reference", "--url", url,
        "--token-env", TOKEN_ENV, *load,
    ]  # fmt: skip
    code, text, cpu, _, _ = await _child(argv, {**os.environ, TOKEN_ENV: token}, tree, 300)
    lines = text.strip().splitlines()
    result = json.loads(lines[-1]) if code == 0 and lines else {}
    if result.get("failed", 1) or result.get("undelivered", 1):
        raise BenchError(f"peer_client from {tree} failed: {text[-300:]}")
    return cpu


def _runs(label: str, runs: list[float]) -> str:
    return f"{label}: {min(runs):.3f} s (every run: {', '.join(f'{r:.2f}' for r in runs)})"


async def _throughput(trees: list[Path], servers: list[ServerProcess], token: str, n: int) -> None:
    chunks, size = await measure_reply(servers[-1].url, token)
    async with EchoServerProcess(frames=chunks, size=size) as echo:
        results: dict[str, list[Run]] = {"echo": [], **{str(t): [] for t in trees}}
        await run_echo(echo.url, 500, chunks=chunks)  # untimed warm-up
        for server in servers:
            await run_reference(server.url, token, 500, chunks=chunks)
        for _ in range(n):
            results["echo"].append(
                await run_echo(echo.url, 3000, chunks=chunks, server_pid=echo.pid)
            )
            for tree, server in zip(trees, servers, strict=True):
                results[str(tree)].append(
                    await run_reference(
                        server.url, token, 3000, chunks=chunks, server_pid=server.pid
                    )
                )
    best_echo = max(r.frames_per_s for r in results["echo"])
    print(f"throughput, 3000 requests, {n} interleaved runs (best frames/s; least server CPU):")
    for name, runs in results.items():
        best = max(r.frames_per_s for r in runs)
        every = ", ".join(f"{r.frames_per_s:,.0f}" for r in runs)
        cpu = min(r.server_cpu_s for r in runs) / 3000 * 1e6
        ratio = best / best_echo
        print(f"  {name}: {best:,.0f} frames/s ({every}), {ratio:.3f}x echo; {cpu:.0f} µs/request")


async def _paired(trees: list[Path], store: str, pairs: int, requests: int) -> None:
    """The throughput load against two servers in alternating order; medians of the ratios."""
    if len(trees) != 2:
        raise SystemExit("paired compares exactly two trees: BEFORE AFTER")
    creds = credentials()
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            stores = [store, store]
            if store == "sqlite":
                stores = [f"sqlite:{Path(tmp) / f'{i}.db'}" for i in range(2)]
            elif store == "redis":
                redis = stack.enter_context(RedisProcess(Path(tmp) / "redis"))
                base = redis.url.rsplit("/", 1)[0]
                stores = [f"{base}/1", f"{base}/2"]
            servers = [
                await stack.enter_async_context(
                    ServerProcess(
                        ["--store", where, "--chunk-delay", "0"],
                        env=creds.env,
                        log_path=Path(tmp) / f"{i}.log",
                        cwd=tree,
                    )
                )
                for i, (tree, where) in enumerate(zip(trees, stores, strict=True))
            ]
            chunks, _ = await measure_reply(servers[0].url, creds.token)
            for server in servers:  # untimed warm-up
                await run_reference(server.url, creds.token, 500, chunks=chunks)
            frames: list[float] = []
            cpu: list[float] = []
            for i in range(pairs):
                runs: dict[int, tuple[Run, float]] = {}
                for k in (0, 1) if i % 2 == 0 else (1, 0):
                    before = cpu_seconds(servers[k].pid)
                    run = await run_reference(servers[k].url, creds.token, requests, chunks=chunks)
                    runs[k] = run, (cpu_seconds(servers[k].pid) - before) / run.requests
                (a, a_cpu), (b, b_cpu) = runs[0], runs[1]
                frames.append(b.frames_per_s / a.frames_per_s)
                cpu.append(b_cpu / a_cpu if a_cpu else float("nan"))
                print(
                    f"  pair {i + 1}: {a.frames_per_s:,.0f} -> {b.frames_per_s:,.0f} frames/s, "
                    f"{a_cpu * 1e6:.1f} -> {b_cpu * 1e6:.1f} µs server CPU/request",
                    flush=True,
                )
    print(
        f"paired throughput, {store} store, {pairs} pairs of {requests} requests "
        f"({trees[1]} over {trees[0]}): frames/s median {statistics.median(frames):.3f}x "
        f"(quartiles {_quartiles(frames)}), server CPU per request median "
        f"{statistics.median(cpu):.3f}x (quartiles {_quartiles(cpu)})"
    )


def _quartiles(values: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values * 3)
    return f"{q1:.3f}-{q3:.3f}"


async def _resumes(trees: list[Path], servers: list[ServerProcess], token: str, n: int) -> None:
    """Drop + resume p50 against each server, ``n`` interleaved blocks of cycles."""
    samples: dict[str, list[float]] = {str(t): [] for t in trees}
    for _ in range(n):
        for tree, server in zip(trees, servers, strict=True):
            measured = await measure_resumes(server.url, token, RESUME_CYCLES)
            samples[str(tree)].extend(measured.samples)
    print(f"drop + resume, {n} interleaved blocks of {RESUME_CYCLES} cycles (p50, p90):")
    for name, values in samples.items():
        p50, p90 = percentile(values, 50) * 1000, percentile(values, 90) * 1000
        print(f"  {name}: {p50:.3f} ms, {p90:.3f} ms")


async def _main(mode: str, trees: list[Path], repeats: int) -> None:
    creds = credentials()
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            servers = [
                await stack.enter_async_context(
                    ServerProcess(
                        SERVER_ARGS, env=creds.env, log_path=Path(tmp) / f"{i}.log", cwd=tree
                    )
                )
                for i, tree in enumerate(trees)
            ]
            if mode == "server":
                await _throughput(trees, servers, creds.token, repeats)
                await _resumes(trees, servers, creds.token, repeats)
            for label, load in LOADS.items():
                cpu: dict[Path, list[float]] = {t: [] for t in trees}
                for _ in range(repeats):
                    for tree, server in zip(trees, servers, strict=True):
                        if mode == "server":
                            before = cpu_seconds(server.pid)
                            await _client(HERE, server.url, creds.token, load)
                            cpu[tree].append(cpu_seconds(server.pid) - before)
                        else:
                            cpu[tree].append(
                                await _client(tree, servers[-1].url, creds.token, load)
                            )
                print(f"{mode} CPU, {label} load ({' '.join(load)}), least of {repeats}:")
                for tree, runs in cpu.items():
                    print("  " + _runs(str(tree), runs))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("mode", choices=("server", "client", "paired"))
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", choices=("memory", "sqlite", "redis"), default="memory")
    parser.add_argument("--pairs", type=int, default=40, help="paired: pairs of runs")
    parser.add_argument("--requests", type=int, default=1000, help="paired: requests a run")
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in args.trees]
    if args.mode == "paired":
        asyncio.run(_paired(trees, args.store, args.pairs, args.requests))
    else:
        asyncio.run(_main(args.mode, trees, args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
