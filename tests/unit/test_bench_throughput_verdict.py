"""The throughput goal's verdict: the median of paired short runs, with its confidence interval."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from bench.throughput import (
    GOAL,
    GOAL_PAIRS,
    Run,
    cpu_placements,
    judge,
    median_interval,
    pinned,
)


def _run(frames_per_s: float) -> Run:
    return Run(requests=1000, frames=int(frames_per_s), seconds=1.0, server_cpu_s=0, client_cpu_s=0)


def _pairs(*ratios: float, echo: float = 50_000) -> list[tuple[Run, Run]]:
    return [(_run(echo), _run(echo * r)) for r in ratios]


def test_the_interval_is_the_order_statistics_the_binomial_tail_allows() -> None:
    # n = 24: P(Binomial(24, 1/2) <= 6) = 0.0113 <= 0.025 < P(<= 7) = 0.0320, so k = 7.
    values = list(range(1, 25))
    assert median_interval(values) == (7, 18)
    # n = 6 is the fewest with an interval at 95% (P(0) = 1/64); n = 5 has none (1/32).
    assert median_interval([1, 2, 3, 4, 5, 6]) == (1, 6)
    assert median_interval([1, 2, 3, 4, 5]) is None


def test_pairs_steadily_above_the_goal_meet_it() -> None:
    verdict = judge(_pairs(*(GOAL + 0.03 + 0.001 * i for i in range(GOAL_PAIRS))))
    assert verdict.interval is not None
    assert verdict.interval[0] >= GOAL
    assert verdict.word == "met"


def test_pairs_steadily_below_miss_it() -> None:
    verdict = judge(_pairs(*(0.59 + 0.001 * i for i in range(GOAL_PAIRS))))
    assert verdict.word == "NOT met"
    assert round(verdict.ratio, 4) == round(0.59 + 0.001 * (GOAL_PAIRS - 1) / 2, 4)


def test_pairs_scattered_across_the_goal_are_inconclusive() -> None:
    rng = random.Random(15)
    verdict = judge(_pairs(*(rng.uniform(GOAL - 0.15, GOAL + 0.15) for _ in range(GOAL_PAIRS))))
    assert verdict.interval is not None
    assert verdict.interval[0] < GOAL <= verdict.interval[1]
    assert verdict.word == "inconclusive"


def test_a_few_pairs_broken_by_a_speed_change_do_not_move_the_verdict() -> None:
    """A pair whose two runs saw the machine at two speeds is an outlier; the median holds."""
    steady = [0.66 + 0.001 * i for i in range(GOAL_PAIRS - 4)]
    verdict = judge(_pairs(*steady, 1.1, 1.2, 0.4, 1.15))
    assert verdict.word == "NOT met"


def test_one_pair_is_not_judged() -> None:
    """Quick mode's single short pair cannot tell a steady figure from a lucky moment."""
    verdict = judge(_pairs(0.75))
    assert verdict.interval is None
    assert verdict.word == "not judged"


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs and sched_setaffinity",
)
def test_a_pair_pins_the_servers_and_the_client_apart_and_gives_the_cpus_back() -> None:
    placements = cpu_placements()
    assert placements[0] is not None
    assert placements[1] == placements[0][::-1]
    own = os.sched_getaffinity(0)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pinned(placements[1], (child.pid, None)):
            assert os.sched_getaffinity(child.pid) == {placements[1][0]}
            assert os.sched_getaffinity(0) == {placements[1][1]}
        assert os.sched_getaffinity(0) == own
    finally:
        child.kill()
        child.wait(10)
