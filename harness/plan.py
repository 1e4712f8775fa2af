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
from harness.estimate import Estimate, estimate
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
    estimate: Estimate = field(default_factory=lambda: Estimate(0.0, 0, 0))
    refused: list[str] = field(default_factory=list)
    """Why it may not run although it could: load without consent, a real-time budget."""
    fallback: bool = False
    """It runs on the real clock only because the target has no clock control."""

    @property
    def runnable(self) -> bool:
        return not self.missing and not self.refused

    @property
    def reason(self) -> str:
        """Why the scenario is skipped (empty when it runs)."""
        if self.runnable:
            return ""
        parts = [*self.refused, *(str(x) for x in self.missing)]
        shown = "; ".join(parts[:5])
        more = f"; and {len(parts) - 5} more" if len(parts) > 5 else ""
        return shown + more

    def refuse(self, why: str) -> Plan:
        return Plan(
            clock=self.clock,
            missing=self.missing,
            estimate=self.estimate,
            refused=[*self.refused, why],
            fallback=self.fallback,
        )


def walk(steps: tuple[m.Step, ...], prefix: str = "") -> Iterator[tuple[str, m.Step]]:
    """Every step with its path, nested ones right after their parent (``4.1``: the first
    step inside step 4; a repeat's cycles and a parallel's clients share their steps)."""
    for index, step in enumerate(steps, start=1):
        path = f"{prefix}{index}"
        yield path, step
        if isinstance(step, m.Repeat | m.Parallel | m.Once):
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
            if step.node is not None:
                out.add("nodes")
            if step.token == "previous":
                out.add("resume_previous_token")
            if step.session_of is not None:
                out.add("take_over")
        case m.Race():
            out |= {"resume", "take_over"}
            if step.nodes is not None:
                out.add("nodes")
            if step.messages:
                out.add("chat")
        case m.KillNode() | m.StartNode() | m.StoreLink():
            out.add("nodes")
        case m.Connect(node=int()):
            out.add("nodes")
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
    load_limit: int | None = None,
) -> Plan:
    """Decide the clock and list what is missing; ``clock`` overrides the scenario's own. With
    ``load_limit`` (an external target), more connections at once than that need consent."""
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
    if scenario.plant_fault or scenario.server_args or scenario.nodes > 1:
        lack("scenario", "embedded")
    for capability in scenario.requires:
        lack("scenario", capability)
    for path, step in walk(scenario.steps):
        for capability in sorted(needs(step)):
            lack(path, capability)
    cost = estimate(scenario, mode)
    decided = Plan(
        clock=mode if not missing else None,
        missing=missing,
        estimate=cost,
        fallback=wanted == "auto" and mode == "real",
    )
    if load_limit is not None and cost.connections > load_limit:
        decided = decided.refuse(
            f"needs consent for load: {cost.connections} connections at once, more than "
            f"{load_limit} (allow it with --allow-load {cost.connections})"
        )
    return decided


def known_requirements() -> frozenset[str]:
    """Every name a scenario's ``requires`` may list."""
    return frozenset(CAPABILITIES) | frozenset(TARGET_CAPABILITIES)
