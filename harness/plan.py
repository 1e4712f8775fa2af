"""Planning a scenario before it starts: which clock, and what it needs that is missing.

Every step needs some capabilities of the driver (``harness.driver.base.CAPABILITIES``) or
of the target (``harness.targets.base.TARGET_CAPABILITIES``). A scenario any of whose steps
needs one that is missing is SKIPPED as a whole, with each such step and what it lacks, before
a socket opens: a scenario half-run without its faults or its clock would judge the wrong
thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from harness.driver.base import CAPABILITIES
from harness.scenario import model as m
from harness.targets.base import TARGET_CAPABILITIES

ClockMode = Literal["virtual", "real"]


@dataclass(frozen=True)
class Missing:
    """A step (``path``, or ``scenario`` for the scenario as a whole) and what it lacks."""

    path: str
    capability: str
    of: Literal["driver", "target"]

    def __str__(self) -> str:
        promise = CAPABILITIES.get(self.capability) or TARGET_CAPABILITIES.get(self.capability)
        where = "scenario" if self.path == "scenario" else f"step {self.path}"
        return f"{where} needs {self.of} capability {self.capability!r} ({promise})"


@dataclass(frozen=True)
class Plan:
    """What running a scenario will take, decided before it starts."""

    clock: ClockMode | None
    missing: list[Missing] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        return not self.missing

    @property
    def reason(self) -> str:
        """Why the scenario is skipped (empty when it runs)."""
        if not self.missing:
            return ""
        shown = "; ".join(str(x) for x in self.missing[:5])
        more = f"; and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        return shown + more


def walk(steps: tuple[m.Step, ...], prefix: str = "") -> Iterator[tuple[str, m.Step]]:
    """Every step with its path, nested ones right after their parent (``4.1``: the first
    step inside step 4; a repeat's cycles and a parallel's clients share their steps)."""
    for index, step in enumerate(steps, start=1):
        path = f"{prefix}{index}"
        yield path, step
        if isinstance(step, m.Repeat | m.Parallel):
            yield from walk(step.steps, f"{path}.")


def needs(step: m.Step) -> set[str]:
    """The capabilities one step needs, of the driver and of the target together."""
    out: set[str] = set()
    match step:
        case m.Chat():
            out.add("chat")
            if step.resend is not None:
                out.add("resend")
        case m.Send():
            out.add("raw_frames")
        case m.Drop(how="server_restart"):
            out.add("restart")
        case m.ChangeIp():
            out.add("source_ip" if step.source is not None else "forwarded_for")
        case m.Resume():
            out.add("resume")
            if step.token == "previous":
                out.add("resume_previous_token")
            if step.session_of is not None:
                out.add("take_over")
        case m.Expect():
            if step.history is not None:
                out.add("history")
                if step.history.page_size is not None:
                    out.add("history_pages")
            if step.context is not None:
                out.add("context")
            if step.resume is not None:
                if step.resume.notice is not None:
                    out.add("notices")
                if step.resume.closed is not None:
                    out.add("close_reason")
            if step.metrics:
                out.add("metrics")
            if step.store is not None:
                out.add("inspect_store")
        case _:
            pass
    return out


def plan(
    scenario: m.Scenario,
    *,
    driver: frozenset[str],
    target: frozenset[str],
    clock: Literal["virtual", "real", "auto"] | None = None,
) -> Plan:
    """Decide the clock and list what is missing; ``clock`` overrides the scenario's own."""
    wanted = clock or scenario.clock
    has_clock = "virtual_clock" in target
    mode: ClockMode = "virtual" if wanted != "real" and has_clock else "real"
    missing: list[Missing] = []

    def lack(path: str, capability: str) -> None:
        have = driver if capability in CAPABILITIES else target
        if capability not in have:
            of: Literal["driver", "target"] = "driver" if capability in CAPABILITIES else "target"
            missing.append(Missing(path, capability, of))

    if wanted == "virtual":
        lack("scenario", "virtual_clock")
    if scenario.plant_fault or scenario.server_args:
        lack("scenario", "embedded")
    for capability in scenario.requires:
        lack("scenario", capability)
    for path, step in walk(scenario.steps):
        for capability in sorted(needs(step)):
            lack(path, capability)
    return Plan(clock=mode if not missing else None, missing=missing)


def known_requirements() -> frozenset[str]:
    """Every name a scenario's ``requires`` may list."""
    return frozenset(CAPABILITIES) | frozenset(TARGET_CAPABILITIES)
