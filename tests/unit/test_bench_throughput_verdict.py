"""The throughput goal's verdict: median of paired runs, and no verdict on an unsteady machine."""

from __future__ import annotations

from bench.throughput import GOAL, SPREAD_LIMIT, Run, judge


def _runs(*frames_per_s: float) -> list[Run]:
    return [
        Run(requests=1000, frames=int(f), seconds=1.0, server_cpu_s=0, client_cpu_s=0)
        for f in frames_per_s
    ]


def test_the_ratio_is_the_median_of_each_memory_run_over_the_echo_run_before_it() -> None:
    verdict = judge(_runs(100, 102, 101), _runs(60, 63, 61))
    assert round(verdict.ratio, 3) == round(61 / 101, 3)
    assert verdict.word == "NOT met"


def test_a_steady_machine_meeting_the_goal_is_met() -> None:
    echo = _runs(100, 101, 99, 100, 102)
    verdict = judge(echo, _runs(*(e.frames * (GOAL + 0.02) for e in echo)))
    assert verdict.spread is not None
    assert verdict.spread <= SPREAD_LIMIT
    assert verdict.word == "met"


def test_a_machine_whose_speed_changed_gives_no_verdict_even_when_best_beats_best() -> None:
    # The echo's runs of a busy-machine run on 2026-12-02, with its memory runs.
    verdict = judge(_runs(24134, 20019, 26399), _runs(16142, 18187, 26957))
    assert verdict.spread is not None
    assert verdict.spread > SPREAD_LIMIT
    assert verdict.word == "inconclusive"


def test_one_run_each_is_not_judged() -> None:
    """Quick mode's single short runs cannot tell a steady machine from a lucky moment."""
    verdict = judge(_runs(100), _runs(75))
    assert verdict.spread is None
    assert verdict.word == "not judged"
