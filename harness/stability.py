"""Is a suite flaky? Run it N times in a row and compare each scenario's verdicts.

``harness stability PATH... --runs 20`` runs the suite ``N`` times through one engine (one
Toxiproxy, a fresh target per scenario as always), each run with its own seed for the clients'
backoff jitter (``--seed S`` gives ``S``, ``S+1``, ...), and prints, per scenario, how many runs
ended in each status. A scenario is *stable* when every run gave it the same status; a suite
that is stable and passed in every run is green. A flaky scenario is named with the runs that
differed and the first failure of each, so the timing it depends on can be found. Wall times
per run (fastest, median, slowest) show whether the suite stays fast.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.engine import Engine
from harness.results import RunResult, ScenarioResult
from harness.scenario import model as m

STATUSES = ("passed", "failed", "error", "skipped")


@dataclass
class Stability:
    """Each scenario's status in each run, and each run's wall time."""

    runs: int
    scenarios: list[str]
    statuses: dict[str, list[str]] = field(default_factory=dict)
    """scenario -> its status in run 1, 2, ..."""
    failures: dict[str, dict[int, str]] = field(default_factory=dict)
    """scenario -> run (1-based) -> where and why it did not pass, for runs it did not."""
    seconds: list[float] = field(default_factory=list)
    """The wall time of each run."""
    infrastructure_failed: list[int] = field(default_factory=list)
    """Runs in which the harness's own machinery (Toxiproxy, a target) failed."""

    def counts(self, scenario: str) -> Counter[str]:
        return Counter(self.statuses[scenario])

    def stable(self, scenario: str) -> bool:
        return len(set(self.statuses[scenario])) == 1

    @property
    def flaky(self) -> list[str]:
        return [s for s in self.scenarios if not self.stable(s)]

    @property
    def green(self) -> bool:
        """Every scenario passed in every run."""
        return all(set(self.statuses[s]) == {"passed"} for s in self.scenarios)

    def add(self, run: int, record: RunResult) -> None:
        """Take the results of run ``run`` (1-based)."""
        self.seconds.append(record.seconds)
        if record.infrastructure_failed:
            self.infrastructure_failed.append(run)
        for result in record.scenarios:
            if result.name not in self.statuses:
                self.scenarios.append(result.name)
                self.statuses[result.name] = []
            self.statuses[result.name].append(result.status)
            if result.status != "passed":
                self.failures.setdefault(result.name, {})[run] = _where(result)


def _where(result: ScenarioResult) -> str:
    step = result.first_failure
    if step is not None:
        return f"step {step.path} ({step.kind}): {step.message}"
    return result.error or result.status


async def repeat_suite(
    engine: Engine,
    scenarios: Sequence[tuple[Path, m.Scenario]],
    runs: int,
    *,
    suite: str,
    seed: int | None,
    progress: Callable[[int, RunResult], None] | None = None,
) -> Stability:
    """Run ``scenarios`` ``runs`` times in a row with ``engine``; collect the verdicts."""
    found = Stability(runs=runs, scenarios=[])
    for run in range(1, runs + 1):
        engine.options.seed = None if seed is None else seed + run - 1
        record = await engine.run(list(scenarios), suite=suite)
        found.add(run, record)
        if progress is not None:
            progress(run, record)
    return found


def render(found: Stability, *, suite: str, limit: int = 3) -> str:
    """The markdown table of verdict counts, the flaky scenarios' differing runs, wall times."""
    lines = [
        f"# Stability of {suite}: {found.runs} runs",
        "",
        "| scenario | " + " | ".join(STATUSES) + " | verdict |",
        "|---|" + "---:|" * len(STATUSES) + "---|",
    ]
    for name in found.scenarios:
        counts = found.counts(name)
        verdict = "stable" if found.stable(name) else "**FLAKY**"
        cells = " | ".join(str(counts.get(status, 0)) for status in STATUSES)
        lines.append(f"| {_cell(name)} | {cells} | {verdict} |")
    lines.append("")
    flaky = found.flaky
    if flaky:
        lines.append(f"{len(flaky)} of {len(found.scenarios)} scenarios flaky:")
        lines.append("")
        for name in flaky:
            failures = found.failures.get(name, {})
            shown = list(failures.items())[:limit]
            lines.append(f"- **{name}**: did not pass in runs {_runs(list(failures))}")
            lines.extend(f"  - run {run}: {why}" for run, why in shown)
            if len(failures) > limit:
                lines.append(f"  - and {len(failures) - limit} more")
        lines.append("")
    elif found.green:
        lines.append(f"Every scenario passed in every one of the {found.runs} runs.")
        lines.append("")
    else:
        lines.append("Every scenario got the same verdict in every run (not all passed).")
        lines.append("")
    if found.infrastructure_failed:
        lines.append(
            "The harness's own machinery failed in runs "
            f"{_runs(found.infrastructure_failed)}: their errors say nothing about the target."
        )
        lines.append("")
    if found.seconds:
        lines.append(
            f"Wall time per run: fastest {min(found.seconds):.1f} s, median "
            f"{statistics.median(found.seconds):.1f} s, slowest {max(found.seconds):.1f} s."
        )
        lines.append("")
    return "\n".join(lines)


def _runs(runs: list[int]) -> str:
    return ", ".join(str(run) for run in runs)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
