"""The verdict counts of ``harness stability``, on hand-made run results."""

from __future__ import annotations

from harness.results import RunResult, ScenarioResult, StepResult
from harness.stability import Stability, render


def run(*statuses: tuple[str, str], seconds: float = 5.0, infra: bool = False) -> RunResult:
    scenarios = []
    for name, status in statuses:
        steps = []
        if status == "failed":
            steps = [StepResult(path="3", kind="resume", status="failed", message="saw degraded")]
        scenarios.append(
            ScenarioResult(
                name=name,
                file=f"{name}.yaml",
                status=status,  # type: ignore[arg-type]
                steps=steps,
                error="Toxiproxy stopped answering" if status == "error" else "",
                infrastructure=infra and status == "error",
            )
        )
    return RunResult(started="2026-12-01T00:00:00Z", seconds=seconds, scenarios=scenarios)


def collect(*runs: RunResult) -> Stability:
    found = Stability(runs=len(runs), scenarios=[])
    for i, record in enumerate(runs, 1):
        found.add(i, record)
    return found


def test_the_same_pass_in_every_run_is_stable_and_green() -> None:
    found = collect(*(run(("a", "passed"), ("b", "passed")) for _ in range(3)))
    assert [] == found.flaky
    assert found.green
    text = render(found, suite="s")
    assert "| a | 3 | 0 | 0 | 0 | stable |" in text
    assert "Every scenario passed in every one of the 3 runs." in text


def test_one_run_that_differs_makes_the_scenario_flaky_with_the_run_and_its_failure() -> None:
    found = collect(
        run(("a", "passed"), ("b", "passed")),
        run(("a", "passed"), ("b", "failed")),
        run(("a", "passed"), ("b", "passed")),
    )
    assert ["b"] == found.flaky
    assert not found.green
    text = render(found, suite="s")
    assert "| b | 2 | 1 | 0 | 0 | **FLAKY** |" in text
    assert "- **b**: did not pass in runs 2" in text
    assert "  - run 2: step 3 (resume): saw degraded" in text


def test_a_scenario_that_fails_every_run_is_stable_but_not_green() -> None:
    found = collect(*(run(("a", "failed")) for _ in range(2)))
    assert [] == found.flaky
    assert not found.green
    assert "same verdict in every run (not all passed)" in render(found, suite="s")


def test_skipped_in_every_run_is_not_green() -> None:
    """A suite that verified nothing is never green, however stable."""
    found = collect(*(run(("a", "skipped")) for _ in range(2)))
    assert not found.green


def test_runs_whose_machinery_failed_are_named() -> None:
    found = collect(run(("a", "passed")), run(("a", "error"), infra=True))
    assert [2] == found.infrastructure_failed
    assert "machinery failed in runs 2" in render(found, suite="s")


def test_wall_times_fastest_median_slowest() -> None:
    found = collect(*(run(("a", "passed"), seconds=s) for s in (3.0, 9.0, 4.0)))
    assert "fastest 3.0 s, median 4.0 s, slowest 9.0 s" in render(found, suite="s")


def test_many_differing_runs_are_cut_short() -> None:
    found = collect(*(run(("a", "failed" if i % 2 else "passed")) for i in range(10)))
    text = render(found, suite="s", limit=3)
    assert "did not pass in runs 2, 4, 6, 8, 10" in text
    assert "and 2 more" in text
