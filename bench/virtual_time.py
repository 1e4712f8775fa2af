"""Virtual time: the seed suite's wall time against the sum of the waits it contains.

The seed suite (``scenarios/seed``) is run as ``harness run`` runs it: the run engine with the
default options (one Toxiproxy for the run, one embedded reference server per scenario, one
scenario at a time, each on its own clock, here all ``virtual``). Its waits are the virtual
seconds the runner advanced the servers' clocks by (``wait`` steps and ``drop`` durations), plus
the waits that stay real on a virtual clock: a ``chat`` that expects a timeout waits its timeout
out, and on a ``real`` clock ``wait`` and ``drop`` durations are slept. The baseline is that sum:
what the suite would take if every wait were slept. Quick mode runs the same suite (it is short).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.engine import Engine, RunOptions
from harness.estimate import real_waits
from harness.results import RunResult
from harness.scenario import load_files

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "scenarios" / "seed"
GOAL_SPEEDUP = 25.0
"""The suite finishes at least this many times faster than its waits."""
GOAL_WALL_S = 30.0
RUN_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Measured:
    """The suite's result and, per scenario, its real waits (same order)."""

    suite: RunResult
    real: list[float]

    @property
    def virtual_s(self) -> float:
        return sum(r.virtual_seconds for r in self.suite.scenarios)

    @property
    def waits_s(self) -> float:
        return self.virtual_s + sum(self.real)

    @property
    def speedup(self) -> float:
        return self.waits_s / self.suite.seconds


async def _measure() -> Measured:
    loaded = load_files([str(SEED)])
    async with asyncio.timeout(RUN_TIMEOUT_S):
        async with Engine(RunOptions()) as engine:
            suite = await engine.run(loaded)
    real = [
        real_waits(scenario.steps, result.clock)
        for (_, scenario), result in zip(loaded, suite.scenarios, strict=True)
    ]
    return Measured(suite, real)


def _table(measured: Measured) -> str:
    suite = measured.suite
    met = measured.speedup >= GOAL_SPEEDUP and suite.seconds < GOAL_WALL_S
    statuses: dict[str, int] = {}
    for result in suite.scenarios:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    lines = [
        f"The seed suite ({len(suite.scenarios)} scenarios, `scenarios/seed`) through "
        "`harness.engine.Engine` with default options (one scenario at a time, one Toxiproxy, "
        "one embedded reference server per scenario). Waits: virtual seconds advanced, plus the "
        "real ones (a chat expecting a timeout waits it out).",
        "",
        "| scenario | status | clock | wall (s) | virtual waits (s) | real waits (s) "
        "| waits / wall |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for result, real in zip(suite.scenarios, measured.real, strict=True):
        waits = result.virtual_seconds + real
        lines.append(
            f"| {result.name} | {result.status} | {result.clock or '-'} | {result.seconds:.2f} "
            f"| {result.virtual_seconds:.0f} | {real:.0f} "
            f"| {f'{waits / result.seconds:.1f}x' if waits else '-'} |"
        )
    lines.append(
        f"| **suite** | {', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))} | "
        f"| **{suite.seconds:.2f}** | {measured.virtual_s:.0f} | {sum(measured.real):.0f} "
        f"| **{measured.speedup:.1f}x** |"
    )
    lines += [
        "",
        f"Goal (the suite at least {GOAL_SPEEDUP:g}x faster than its waits, under "
        f"{GOAL_WALL_S:g} s for {measured.waits_s / 60:.1f} min of waits): "
        f"**{'met' if met else 'NOT met'}** ({suite.seconds:.1f} s of wall time for "
        f"{measured.waits_s:.0f} s of waits, {measured.speedup:.1f}x). The suite's wall time "
        "includes starting Toxiproxy and each scenario's server.",
    ]
    failing = [r for r in suite.scenarios if r.status in ("failed", "error")]
    for result in failing:
        step = result.first_failure
        where = f"step {step.path} ({step.kind}): {step.message}" if step else result.error
        lines.append(f"- {result.status}: {result.name}: {where[:300]}")
    return "\n".join(lines)


def run(quick: bool = False) -> tuple[Measured, str]:
    """Run the seed suite (the same in quick mode); return the result and a markdown table."""
    del quick  # the suite is short: quick mode runs all of it
    measured = asyncio.run(_measure())
    return measured, _table(measured)


def main(argv: Sequence[str] = ()) -> str:
    """Run and return the markdown table."""
    return run(quick="--quick" in argv)[1]
