"""What a scenario will cost before it runs: real waits, connections, messages.

Read from the scenario alone (no socket opens), so ``harness plan`` can say it, load consent
can be asked for, and a real-time budget (``--max-wall``) can be kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.scenario import model as m


@dataclass(frozen=True)
class Estimate:
    """A scenario's cost on a given clock."""

    real_seconds: float
    """Seconds waited out in real time: waits and drop durations on the real clock, and chat
    timeouts that are expected to expire on either clock."""
    connections: int
    """Simulated clients connected at once, at the most."""
    messages: int
    """Chat messages the scenario sends, in all."""


def estimate(scenario: m.Scenario, clock: str | None) -> Estimate:
    return Estimate(
        real_seconds=real_waits(scenario.steps, clock),
        connections=len(scenario.clients) + _widest(scenario.steps),
        messages=_messages(scenario.steps),
    )


def real_waits(steps: Sequence[m.Step], clock: str | None) -> float:
    """Seconds of the steps that are waited out in real time on the scenario's clock."""
    total = 0.0
    for step in steps:
        if isinstance(step, m.Repeat):
            total += step.times * real_waits(step.steps, clock)
        elif isinstance(step, m.Parallel | m.Once):
            total += real_waits(step.steps, clock)  # the clients run at once; once: one time
        elif isinstance(step, m.Chat) and step.expect == "timeout":
            total += float(step.timeout)  # the first unanswered message ends the step
        elif clock == "real" and isinstance(step, m.Wait | m.Drop) and step.duration:
            total += float(step.duration)
    return total


def _widest(steps: Sequence[m.Step]) -> int:
    widest = 0
    for step in steps:
        if isinstance(step, m.Parallel):
            widest = max(widest, step.clients)
        elif isinstance(step, m.Repeat):
            widest = max(widest, _widest(step.steps))
    return widest


def _messages(steps: Sequence[m.Step]) -> int:
    total = 0
    for step in steps:
        if isinstance(step, m.Chat | m.Race):
            total += step.messages
        elif isinstance(step, m.Repeat):
            total += step.times * _messages(step.steps)
        elif isinstance(step, m.Parallel):
            total += step.clients * _messages(step.steps)
    return total


def format_seconds(seconds: float) -> str:
    """``754`` as ``12 min 34 s``; short ones in seconds."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"
