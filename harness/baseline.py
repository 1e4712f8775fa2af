"""Performance against a saved earlier run: ``harness run --baseline results.json``.

For each scenario that also ran in the baseline (matched by name), the median of each timed
operation (connect, resume, chat, history, context) is compared with the baseline's. A median
more than ``tolerance`` above the baseline's, and more than ``floor`` seconds above it in
absolute terms (so that sub-millisecond noise is never a regression), is a regression: the
scenario fails with a ``baseline`` step whose verdicts carry both figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import results
from harness.checkers import Verdict, percentile
from harness.report.figures import durations_by_operation
from harness.results import ScenarioResult, StepResult


@dataclass(frozen=True)
class Baseline:
    """The medians of a saved run, by scenario name and operation."""

    source: str
    medians: dict[str, dict[str, float]]
    tolerance: float = 0.5
    """A median may be this much above the baseline's (0.5: 50 % slower) before it fails."""
    floor: float = 0.005
    """...and must also be this many seconds above it."""


def load(path: Path, *, tolerance: float, floor: float) -> Baseline:
    """The baseline from a results file (``ValueError`` naming the file if it is not one)."""
    record = results.read(path)
    medians = {
        s.name: {op: percentile(values, 50) for op, values in durations_by_operation(s).items()}
        for s in record.scenarios
        if s.status == "passed"
    }
    return Baseline(str(path), medians, tolerance, floor)


def compare(result: ScenarioResult, baseline: Baseline) -> StepResult | None:
    """A ``baseline`` step for ``result``, or None when the baseline has no such scenario."""
    before = baseline.medians.get(result.name)
    if before is None:
        return None
    now = {op: percentile(v, 50) for op, v in durations_by_operation(result).items()}
    verdicts: list[Verdict] = []
    for operation in sorted(set(before) & set(now)):
        was, is_ = before[operation], now[operation]
        ratio = is_ / was if was > 0 else float("inf")
        slower = is_ > was * (1 + baseline.tolerance) and is_ - was > baseline.floor
        verdicts.append(
            Verdict(
                check="baseline",
                passed=not slower,
                message=f"{operation} p50 {is_ * 1000:.1f} ms against {was * 1000:.1f} ms in the "
                f"baseline ({ratio:.2f}x)",
                expected=f"{operation} p50 at most {1 + baseline.tolerance:.2f}x the baseline's "
                f"(or within {baseline.floor * 1000:g} ms of it)",
                evidence={
                    "operation": operation,
                    "p50": round(is_, 6),
                    "baseline_p50": round(was, 6),
                    "ratio": round(ratio, 3),
                    "baseline": baseline.source,
                },
            )
        )
    if not verdicts:
        return None
    failed = [v for v in verdicts if not v.passed]
    step = StepResult(
        path="baseline",
        kind="baseline",
        status="failed" if failed else "passed",
        verdicts=verdicts,
        message="; ".join(v.message for v in verdicts),
    )
    if failed:
        step.expected, step.seen = failed[0].expected, failed[0].message
        step.message = f"expected {step.expected}; saw {step.seen}"
        step.evidence = dict(failed[0].evidence)
    return step
