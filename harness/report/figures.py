"""Figures every writer takes from a scenario's history: latency by operation, resumes."""

from __future__ import annotations

from collections.abc import Sequence

from harness.history import OPERATION_KINDS, Op, Outcome, Resume, durations
from harness.results import ScenarioResult


def durations_by_operation(scenario: ScenarioResult) -> dict[str, list[float]]:
    """Seconds each successful operation took, by the names scenarios use for them."""
    figures = {
        name: [round(d, 6) for d in durations(scenario.history, kind)]
        for name, kind in OPERATION_KINDS.items()
    }
    return {name: values for name, values in figures.items() if values}


def resume_outcomes(ops: Sequence[Op]) -> list[Outcome]:
    """The outcome of every resume attempt that got an answer."""
    resumes = {op.id for op in ops if op.phase == "invoke" and isinstance(op.body, Resume)}
    return [
        op.body
        for op in ops
        if op.phase == "ok" and op.id in resumes and isinstance(op.body, Outcome)
    ]
