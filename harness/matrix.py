"""The fault matrix: how strong a suite is, measured against a catalogue of planted faults.

The embedded reference server can be started with one protocol rule broken on purpose
(``reference_server/faults.py``). ``harness matrix PATH...`` runs the suite once as it is (the
clean run: a scenario that does not pass there cannot tell a fault from its own problem, and
is left out), then once per fault with that fault planted, and prints which scenario caught
which fault. A fault is *killed* when at least one scenario failed with it planted (a
scenario that errored is shown, but not counted as a kill: an error is not evidence). The kill
rate is the share of faults killed; the faults no scenario catches are the suite's blind spots.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from harness.engine import Engine
from harness.results import ScenarioResult
from harness.scenario import model as m

Progress = Callable[[str, str], None]

KILLED = "✗"
SURVIVED = "·"
ERRORED = "E"


@dataclass
class Matrix:
    """Which scenario caught which fault."""

    faults: list[str]
    scenarios: list[str]
    cells: dict[tuple[str, str], ScenarioResult] = field(default_factory=dict)
    """(fault, scenario) -> the scenario's result with that fault planted."""
    left_out: dict[str, str] = field(default_factory=dict)
    """Scenarios not in the matrix, with why (did not pass clean, plants its own fault)."""
    seconds: float = 0.0

    def killed_by(self, fault: str) -> list[str]:
        return [s for s in self.scenarios if self.cells[(fault, s)].status == "failed"]

    @property
    def survivors(self) -> list[str]:
        """The faults no scenario caught."""
        return [f for f in self.faults if not self.killed_by(f)]

    @property
    def kill_rate(self) -> float:
        return (len(self.faults) - len(self.survivors)) / len(self.faults) if self.faults else 0.0


async def fault_matrix(
    engine: Engine,
    scenarios: Sequence[tuple[Path, m.Scenario]],
    faults: Sequence[str],
    progress: Progress | None = None,
) -> Matrix:
    """Run the suite clean, then with each fault planted; ``engine`` runs ``jobs`` at a time."""
    started = time.perf_counter()
    report = progress or (lambda name, status: None)
    left_out: dict[str, str] = {}
    candidates: list[tuple[Path, m.Scenario]] = []
    for path, scenario in scenarios:
        if scenario.plant_fault is not None:
            left_out[scenario.name] = f"plants its own fault ({scenario.plant_fault})"
        else:
            candidates.append((path, scenario))
    report("clean run", f"{len(candidates)} scenarios")
    clean = await engine.run(candidates)
    kept: list[tuple[Path, m.Scenario]] = []
    for (path, scenario), result in zip(candidates, clean.scenarios, strict=True):
        if result.status == "passed":
            kept.append((path, scenario))
        else:
            left_out[scenario.name] = f"{result.status} without a planted fault"
    matrix = Matrix(list(faults), [s.name for _, s in kept], left_out=left_out)
    runs: list[tuple[Path, m.Scenario]] = []
    keys: list[tuple[str, str]] = []
    for fault in faults:
        for path, scenario in kept:
            runs.append((path, msgspec.structs.replace(scenario, plant_fault=fault)))
            keys.append((fault, scenario.name))
    report("planted", f"{len(faults)} faults x {len(kept)} scenarios")
    planted = await engine.run(runs)
    for key, result in zip(keys, planted.scenarios, strict=True):
        matrix.cells[key] = result
    matrix.seconds = time.perf_counter() - started
    return matrix


def evidence(matrix: Matrix) -> dict[str, dict[str, dict[str, str]]]:
    """For each fault, each scenario that caught it: the step that failed, the check that
    failed there, what it expected and what it saw (``harness matrix --evidence``)."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for fault in matrix.faults:
        caught: dict[str, dict[str, str]] = {}
        for scenario in matrix.killed_by(fault):
            step = matrix.cells[(fault, scenario)].first_failure
            if step is None:
                continue
            failed = next((v.check for v in step.verdicts if not v.passed), "")
            caught[scenario] = {
                "step": f"{step.path} ({step.kind})",
                "check": failed,
                "expected": step.expected,
                "seen": step.seen or step.message,
            }
        out[fault] = caught
    return out


def render(matrix: Matrix, *, suite: str) -> str:
    """The matrix as markdown: one row per fault, one column per scenario, and the summary."""
    columns = [f"s{i}" for i in range(1, len(matrix.scenarios) + 1)]
    killed = len(matrix.faults) - len(matrix.survivors)
    lines = [
        f"# Fault matrix of `{suite}`",
        "",
        f"**Kill rate:** {killed} of {len(matrix.faults)} faults "
        f"({matrix.kill_rate:.0%}) caught by at least one scenario; "
        f"{len(matrix.scenarios)} scenarios, {matrix.seconds:.0f} s.",
        "",
        f"`{KILLED}` the scenario failed with the fault planted (caught), `{SURVIVED}` it passed "
        f"(missed), `{ERRORED}` it errored (not counted as caught).",
        "",
        "| fault | " + " | ".join(columns) + " | caught by |",
        "|---|" + "---|" * len(columns) + "---:|",
    ]
    for fault in matrix.faults:
        cells = []
        for scenario in matrix.scenarios:
            status = matrix.cells[(fault, scenario)].status
            cells.append(
                KILLED if status == "failed" else ERRORED if status == "error" else SURVIVED
            )
        lines.append(f"| `{fault}` | " + " | ".join(cells) + f" | {len(matrix.killed_by(fault))} |")
    lines += ["", "| column | scenario |", "|---|---|"]
    lines += [f"| {c} | {name} |" for c, name in zip(columns, matrix.scenarios, strict=True)]
    if matrix.survivors:
        lines += [
            "",
            "**Not caught by any scenario:** " + ", ".join(f"`{f}`" for f in matrix.survivors),
        ]
    if matrix.left_out:
        lines += ["", "**Left out of the matrix:**", ""]
        lines += [f"- {name}: {why}" for name, why in matrix.left_out.items()]
    return "\n".join(lines) + "\n"
