"""Run one scenario through the engine, no reports written, and say what it cost.

    .venv/bin/python scripts/herd_cpu.py scenarios/chaos/07_herd_of_1000.yaml 2

prints the scenario's status and seconds, this process's CPU (the harness's parent), its
children's CPU (the reference server, Toxiproxy, and the worker processes), and each
worker's own CPU (from the run's environment). The second argument is ``--workers``.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time

from harness.engine import Engine, RunOptions
from harness.scenario import load_files


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def main(path: str, workers: int) -> None:
    scenarios = load_files([path])
    async with Engine(RunOptions(workers=workers)) as engine:
        started = time.perf_counter()
        record = await engine.run(scenarios)
        wall = time.perf_counter() - started
    for scenario in record.scenarios:
        print(
            f"workers={workers} {scenario.status} scenario {scenario.seconds:.1f} s, "
            f"run {wall:.1f} s; CPU: harness parent {cpu(resource.RUSAGE_SELF):.1f} s, "
            f"children {cpu(resource.RUSAGE_CHILDREN):.1f} s; "
            f"{record.environment.get('spread', 'no group spread')}"
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
