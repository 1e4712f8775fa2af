"""Latency against a saved earlier run: regressions beyond the tolerance fail, noise does not."""

from __future__ import annotations

from pathlib import Path

from harness import baseline, results
from harness.history import Connect, Op, Outcome, Resume
from harness.results import RunResult, ScenarioResult


def timed(resume_s: float, connect_s: float = 0.004) -> list[Op]:
    """A history with one connect and one resume that took these many seconds."""
    outcome = Outcome(kind="new", session="S", stream="S#1", after=0)
    return [
        Op(index=0, id=1, process="c", phase="invoke", time=0.0, body=Connect()),
        Op(index=1, id=1, process="c", phase="ok", time=connect_s, body=outcome),
        Op(index=2, id=2, process="c", phase="invoke", time=1.0, body=Resume()),
        Op(index=3, id=2, process="c", phase="ok", time=1.0 + resume_s, body=outcome),
    ]


def scenario(resume_s: float) -> ScenarioResult:
    return ScenarioResult(name="cycles", file="c.yaml", status="passed", history=timed(resume_s))


def saved(tmp_path: Path, resume_s: float, *, tolerance: float = 0.5) -> baseline.Baseline:
    record = RunResult(started="2026-01-01T00:00:00Z", seconds=1.0, scenarios=[scenario(resume_s)])
    results.write(record, tmp_path / "base.json")
    return baseline.load(tmp_path / "base.json", tolerance=tolerance, floor=0.005)


def test_a_resume_far_slower_than_in_the_baseline_fails_with_both_figures(tmp_path: Path) -> None:
    """A resume median of 700 ms against 7 ms in the saved run is a regression."""
    step = baseline.compare(scenario(0.7), saved(tmp_path, 0.007))
    assert step is not None
    assert ("failed", "baseline") == (step.status, step.kind)
    failed = [v for v in step.verdicts if not v.passed]
    assert [("resume", 0.7, 0.007)] == [
        (v.evidence["operation"], v.evidence["p50"], v.evidence["baseline_p50"]) for v in failed
    ]


def test_within_the_tolerance_or_the_floor_is_no_regression(tmp_path: Path) -> None:
    """40% slower passes a 50% tolerance; 3x slower by 2 ms is under the 5 ms floor."""
    within = baseline.compare(scenario(0.0140), saved(tmp_path, 0.010))
    noise = baseline.compare(scenario(0.003), saved(tmp_path, 0.001))
    assert ("passed", "passed") == (
        within.status if within else None,
        noise.status if noise else None,
    )


def test_a_scenario_the_baseline_lacks_is_not_compared(tmp_path: Path) -> None:
    """No scenario of that name in the baseline: nothing to compare, no step."""
    other = ScenarioResult(name="new one", file="n.yaml", status="passed", history=timed(0.7))
    assert None is baseline.compare(other, saved(tmp_path, 0.007))
