"""What each client of a scenario went through, read from its history: the HTML timeline.

For one client: its connections and resumes with their outcomes, drops and closes, the fault
layer's actions, clock jumps and restarts (these three concern every client), the checks that
failed, and every delivery at its stream position, marked as a duplicate, a reordering or a
loss by the delivery checker's own definitions (``harness.checkers``), with the step whose
check named it where one did. Pure functions of a ``ScenarioResult``: nothing here reads
anything but the record.

Times are seconds since the scenario began *on the target's clock*: wall time plus every jump
of the virtual clock before it, so that a 15 s virtual gap is 15 s wide on the chart. With the
real clock that is wall time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from harness.checkers import client_view
from harness.history import (
    AdvanceClock,
    AwaitReply,
    Closed,
    Connect,
    Delivered,
    Disconnect,
    Failure,
    FaultAction,
    InspectStore,
    NodeAction,
    Notice,
    Op,
    Outcome,
    Position,
    RealWait,
    Restart,
    Resume,
    Retry,
    RouteChanged,
    SendRaw,
    StepEnd,
    StepStart,
    StoredRows,
    Violation,
)
from harness.results import ScenarioResult

Lane = Literal["session", "network", "clock", "checks"]
LANES: tuple[Lane, ...] = ("session", "network", "clock", "checks")
"""The event rows of a timeline, top to bottom."""

MarkKind = Literal["delivered", "duplicate", "reordered", "lost", "declared_lost"]
MARK_KINDS: tuple[MarkKind, ...] = ("delivered", "duplicate", "reordered", "lost", "declared_lost")

EventKind = Literal[
    "new",
    "full",
    "degraded",
    "rejected",
    "failed",
    "drop",
    "closed",
    "notice",
    "fault",
    "clock",
    "restart",
    "check_failed",
    "other",
]

GLOBAL_PROCESSES = ("fault", "clock", "target")
"""Processes whose events concern every client."""

_DECLARED_LIMIT = 200
"""A declared-lost range wider than this is drawn as its two ends."""


@dataclass(frozen=True)
class Event:
    """Something that happened, at ``t`` on the scenario's clock (``wall`` seconds)."""

    t: float
    wall: float
    lane: Lane
    kind: EventKind
    text: str
    step: str | None = None
    """The path of the step it happened in."""


@dataclass(frozen=True)
class Mark:
    """One delivery (or one position that never arrived) on the chart."""

    t: float
    wall: float
    kind: MarkKind
    position: Position
    y: float
    """Where it is drawn: the position, or the arrival order for opaque positions."""
    stream: str
    found_by: str | None = None
    """The step whose failed check named it, if one did."""


@dataclass(frozen=True)
class Offline:
    """The client had no connection from ``start`` to ``end`` (None: until the end)."""

    start: float
    end: float | None
    why: str
    start_wall: float = 0.0
    end_wall: float | None = None


@dataclass
class ClientTimeline:
    """One client's timeline."""

    client: str
    events: list[Event] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    offline: list[Offline] = field(default_factory=list)
    axis: Literal["position", "arrival"] = "position"
    """``arrival`` when positions are opaque: marks are drawn by arrival order."""
    end: float = 0.0
    """The scenario's last moment on its clock; ``end_wall`` the same in wall seconds."""
    end_wall: float = 0.0

    def count(self, kind: MarkKind) -> int:
        return sum(m.kind == kind for m in self.marks)


def scenario_clock(ops: Sequence[Op]) -> dict[int, float]:
    """Each op's time on the scenario's clock (wall time plus the clock jumps before it), by
    its index."""
    jumped = 0.0
    out: dict[int, float] = {}
    for op in ops:
        out[op.index] = op.time + jumped
        if op.phase == "invoke" and isinstance(op.body, AdvanceClock):
            jumped += op.body.seconds
    return out


def clients(scenario: ScenarioResult) -> list[str]:
    """The clients of a scenario in the order they first appear in its history."""
    seen: dict[str, None] = {}
    for op in scenario.history:
        if op.process not in GLOBAL_PROCESSES and op.process != "runner":
            seen.setdefault(op.process, None)
    return list(seen)


def timelines(scenario: ScenarioResult) -> list[ClientTimeline]:
    """Every client's timeline, in the order the clients first appear."""
    return [timeline(scenario, client) for client in clients(scenario)]


def timeline(scenario: ScenarioResult, client: str) -> ClientTimeline:
    """One client's timeline."""
    ops = scenario.history
    clock = scenario_clock(ops)
    steps = _step_of(ops)
    found = _found_by(scenario)
    out = ClientTimeline(
        client=client, axis="arrival" if scenario.positions == "opaque" else "position"
    )
    out.end = max(clock.values(), default=0.0)
    out.end_wall = max((op.time for op in ops), default=0.0)
    parallel = _in_parallel(ops)
    invoked: dict[int, Op] = {}
    offline_since: tuple[float, float, str] | None = None
    # Inside a parallel step every client acts on the shared fault layer and clock: each such
    # action is shown once, and how many more times it happened (by any client) at its last.
    repeated: dict[str, list[Event]] = {}

    def add(op: Op, lane: Lane, kind: EventKind, text: str) -> None:
        event = Event(clock[op.index], op.time, lane, kind, text, steps.get(op.index))
        if op.process in GLOBAL_PROCESSES and op.index in parallel:
            seen = repeated.setdefault(text, [])
            seen.append(event)
            if len(seen) > 1:
                return
        out.events.append(event)

    for op in ops:
        if op.phase == "invoke":
            invoked[op.id] = op
        mine = op.process == client
        if not mine and op.process not in GLOBAL_PROCESSES:
            continue
        body = op.body
        start = invoked.get(op.id)
        begun = start.body if start is not None and op.phase != "invoke" else None
        t = clock[op.index]
        if mine and isinstance(begun, Connect | Resume):
            what = _attempt(begun)
            if isinstance(body, Outcome):
                add(op, "session", body.kind, f"{what}: {_outcome_text(body)}")
                if body.kind != "rejected" and offline_since is not None:
                    since, since_wall, why = offline_since
                    out.offline.append(Offline(since, t, why, since_wall, op.time))
                    offline_since = None
            elif isinstance(body, Failure):
                unknown = " (outcome unknown)" if op.phase == "info" else ""
                add(op, "session", "failed", f"{what} failed{unknown}: {body.error}")
        elif mine and isinstance(body, Disconnect) and op.phase == "invoke":
            add(op, "session", "drop", f"drop: {body.how}")
            if offline_since is None:
                offline_since = (t, op.time, f"drop ({body.how})")
        elif mine and isinstance(body, Closed):
            code = f" with code {body.code}" if body.code is not None else ""
            reason = f" ({body.reason})" if body.reason else ""
            add(op, "session", "closed", f"connection closed{code}{reason}")
            if offline_since is None:
                offline_since = (t, op.time, f"closed{code}")
        elif mine and isinstance(body, Notice):
            detail = ", ".join(f"{k}={v}" for k, v in body.detail.items())
            add(op, "session", "notice", f"notice {body.kind}" + (f": {detail}" if detail else ""))
        elif mine and isinstance(body, Violation):
            add(op, "session", "failed", f"protocol violation: {body.message}")
        elif mine and isinstance(body, Retry):
            add(
                op,
                "session",
                "other",
                f"retry {body.of} (attempt {body.attempt}) in {body.delay:.3f} s",
            )
        elif mine and isinstance(body, RouteChanged):
            add(op, "network", "other", f"route: {_route_text(body)}")
        elif mine and isinstance(body, SendRaw) and op.phase == "invoke":
            kind = "binary" if body.binary else "text"
            add(op, "session", "other", f"raw {kind} frame of {body.size} bytes")
        elif mine and isinstance(begun, AwaitReply) and isinstance(body, Failure):
            add(
                op,
                "session",
                "failed",
                body.error
                if begun.message_id in body.error
                else f"no reply to {begun.message_id}: {body.error}",
            )
        elif isinstance(body, FaultAction) and op.phase == "invoke":
            if body.action not in ("create", "delete"):
                add(op, "network", "fault", _fault_text(body))
        elif isinstance(body, AdvanceClock) and op.phase == "invoke":
            add(op, "clock", "clock", f"virtual clock +{body.seconds:g} s")
        elif isinstance(body, RealWait) and op.phase == "invoke":
            add(op, "clock", "clock", f"real wait {body.seconds:g} s")
        elif isinstance(body, Restart) and op.phase == "invoke":
            add(op, "clock", "restart", "target restarted")
        elif isinstance(body, NodeAction) and op.phase == "invoke":
            verb = "killed (SIGKILL)" if body.action == "kill" else "started again"
            add(op, "clock", "restart", f"node {body.node} {verb}")
        elif isinstance(body, StoredRows) and isinstance(begun, InspectStore):
            rows = sum(body.rows.values())
            add(op, "session", "other", f"store inspected: {rows} rows of the session left")
    if offline_since is not None:
        since, since_wall, why = offline_since
        out.offline.append(Offline(since, None, why, since_wall, None))
    for text, seen in repeated.items():
        if len(seen) > 1:
            last = seen[-1]
            more = f"{text}: {len(seen) - 1} more times in the parallel step, by any client"
            out.events.append(
                Event(last.t, last.wall, last.lane, last.kind, f"{more}, the last here")
            )
    out.events += _failed_checks(scenario, client, clock)
    out.events.sort(key=lambda e: e.t)
    out.marks = _marks(scenario, client, clock, found)
    return out


def _attempt(body: Connect | Resume) -> str:
    if isinstance(body, Connect):
        name = "connect"
    elif isinstance(body, Resume) and body.session_of is not None:
        name = f"take over {body.session_of}'s session"
    elif isinstance(body, Resume) and body.token == "previous":
        name = "resume with the previous token"
    else:
        name = "resume"
    return name + (f" (attempt {body.attempt})" if body.attempt > 1 else "")


def _outcome_text(o: Outcome) -> str:
    if o.kind == "new":
        return "new session"
    if o.kind == "rejected":
        return "rejected" + (f" ({o.reason})" if o.reason else "")
    text = o.kind + (f" ({', '.join(o.warnings)})" if o.warnings else "")
    details = []
    if o.gap_s is not None:
        details.append(f"after a {o.gap_s:.3f} s gap")
    if o.replayed is not None:
        details.append(f"{o.replayed} replayed")
    if o.missed is not None:
        details.append(f"positions {o.missed[0]} to {o.missed[1]} declared lost")
    return ", ".join([text, *details])


def _fault_text(f: FaultAction) -> str:
    if f.action == "down":
        return "proxy down (connections cut, new ones refused)"
    if f.action == "up":
        return "proxy up"
    if f.action == "heal":
        return "heal: every toxic removed"
    if f.action == "half_open":
        return "half-open: data blackholed, sockets kept open"
    if f.action == "remove_toxic":
        return f"toxic {f.toxic or f.toxic_type or ''} removed".replace("  ", " ")
    attributes = ", ".join(f"{k}={v:g}" for k, v in f.attributes.items())
    where = f" on {f.stream}" if f.stream else ""
    share = f" ({f.toxicity:.0%} of connections)" if f.toxicity not in (None, 1.0) else ""
    detail = f" [{attributes}]" if attributes else ""
    return f"toxic {f.toxic_type or f.toxic or ''}{where}{detail}{share}"


def _route_text(r: RouteChanged) -> str:
    if r.node is not None:
        return f"to node {r.node}"
    parts = [f"from {r.source}" if r.source else "from the default address"]
    if r.forwarded_for:
        parts.append(f"forwarded for {r.forwarded_for}")
    return ", ".join(parts)


def _step_of(ops: Sequence[Op]) -> dict[int, str]:
    """The path of the step each op happened in, by op index: for a client's op, that client's
    innermost open step; for any other, the innermost open step (steps of ``parallel`` clients
    run at once, so theirs are told apart by client)."""
    out: dict[int, str] = {}
    # Open steps by id, in the order they began (dicts keep it), overall and per client: the
    # innermost is the last one, found without scanning (a herd has a thousand open at once).
    open_steps: dict[int, str] = {}
    open_of: dict[str | None, dict[int, str]] = {}
    client_of: dict[int, str | None] = {}
    for op in ops:
        body = op.body
        if isinstance(body, StepStart) and op.phase == "invoke":
            open_steps[op.id] = body.path
            open_of.setdefault(body.client, {})[op.id] = body.path
            client_of[op.id] = body.client
        own = open_of.get(op.process)
        chosen = own or open_steps
        if chosen:
            out[op.index] = chosen[next(reversed(chosen))]
        if isinstance(body, StepEnd) and op.id in open_steps:
            del open_steps[op.id]
            del open_of[client_of.pop(op.id)][op.id]
    return out


def _in_parallel(ops: Sequence[Op]) -> set[int]:
    """The indices of the ops recorded while a ``parallel`` step ran."""
    out: set[int] = set()
    running: set[int] = set()
    for op in ops:
        body = op.body
        if isinstance(body, StepStart) and op.phase == "invoke" and body.kind == "parallel":
            running.add(op.id)
        if running:
            out.add(op.index)
        if isinstance(body, StepEnd):
            running.discard(op.id)
    return out


def step_ends(ops: Sequence[Op]) -> dict[str, Op]:
    """The op that ended each step, by step path (the last one, for a step run twice)."""
    starts = {op.id: op.body.path for op in ops if isinstance(op.body, StepStart)}
    return {starts[op.id]: op for op in ops if isinstance(op.body, StepEnd) and op.id in starts}


def _failed_checks(scenario: ScenarioResult, client: str, clock: dict[int, float]) -> list[Event]:
    """A failed check at the end of its step, on the timeline of the client it judged (all
    clients for checks about the run)."""
    ends = step_ends(scenario.history)
    out: list[Event] = []
    for step in scenario.steps:
        if step.status == "passed" or (step.client is not None and step.client != client):
            continue
        end = ends.get(step.path)
        if end is None:
            continue
        failed = [v for v in step.verdicts if not v.passed and not v.check.endswith("(must fail)")]
        texts = [f"{v.check}: {v.message}" for v in failed] or [step.message or step.status]
        for text in texts:
            t = clock[end.index]
            out.append(
                Event(t, end.time, "checks", "check_failed", f"step {step.path} {text}", step.path)
            )
    return out


def _found_by(scenario: ScenarioResult) -> dict[tuple[str, str, str], str]:
    """(kind, stream, position as text) -> the path of the step whose failed delivery check
    named it, from the checks' evidence."""
    out: dict[tuple[str, str, str], str] = {}
    for step in scenario.steps:
        for v in step.verdicts:
            if v.passed or not v.check.startswith("delivery"):
                continue
            stream = str(v.evidence.get("stream", ""))
            for key, kind in (("duplicated", "duplicate"), ("lost", "lost")):
                for p in _as_list(v.evidence.get(key)):
                    out.setdefault((kind, stream, str(p)), step.path)
            if "reordered" in v.message:
                # "position P arrived after H (reordered)": P is the reordered one.
                words = v.message.split()
                if len(words) > 1:
                    out.setdefault(("reordered", stream, words[1]), step.path)
    return out


def _named(
    found: dict[tuple[str, str, str], str], kind: str, stream: str, p: Position
) -> str | None:
    """The step whose check named this position (evidence without a stream names any)."""
    return found.get((kind, stream, str(p))) or found.get((kind, "", str(p)))


def _as_list(value: object) -> Iterable[object]:
    return value if isinstance(value, list) else []


def _marks(
    scenario: ScenarioResult,
    client: str,
    clock: dict[int, float],
    found: dict[tuple[str, str, str], str],
) -> list[Mark]:
    """Every delivery to ``client``, marked the way ``checkers.delivery`` judges them, then
    the positions that never arrived (dense positions) and those the target declared lost."""
    ops = scenario.history
    view = client_view(ops, client)
    opaque = scenario.positions == "opaque"
    marks: list[Mark] = []
    seen: set[tuple[str, Position]] = set()
    highest: dict[str, int] = {}
    arrivals: dict[str, int] = {}
    first_above: dict[str, list[tuple[int, float, float]]] = {}

    for op in ops:
        body = op.body
        if op.process != client or not isinstance(body, Delivered):
            continue
        stream, p = body.stream, body.position
        arrivals[stream] = arrivals.get(stream, 0) + 1
        y = float(arrivals[stream]) if opaque or not isinstance(p, int) else float(p)
        if (stream, p) in seen:
            kind: MarkKind = "duplicate"
        elif not opaque and isinstance(p, int) and stream in highest and p < highest[stream]:
            kind = "reordered"
        else:
            kind = "delivered"
        seen.add((stream, p))
        if isinstance(p, int) and not opaque:
            highest[stream] = max(highest.get(stream, p), p)
            first_above.setdefault(stream, []).append((p, clock[op.index], op.time))
        who = _named(found, kind, stream, p)
        marks.append(Mark(clock[op.index], op.time, kind, p, y, stream, who))
    if scenario.positions == "dense":
        for stream, arrived in first_above.items():
            start = view.starts.get(stream)
            ints = [p for p, _, _ in arrived]
            first = start + 1 if isinstance(start, int) else min(ints)
            declared = {
                p
                for a, b in view.declared_missed.get(stream, [])
                if isinstance(a, int) and isinstance(b, int)
                for p in range(a, b + 1)
            }
            have = set(ints) | declared
            for p in range(first, max(ints) + 1):
                if p in have:
                    continue
                # Drawn where the gap showed: when the first later position arrived.
                _, t, wall = next(item for item in arrived if item[0] > p)
                marks.append(
                    Mark(t, wall, "lost", p, float(p), stream, _named(found, "lost", stream, p))
                )
    for op in ops:
        body = op.body
        if op.process == client and op.phase == "ok" and isinstance(body, Outcome) and body.missed:
            a, b = body.missed
            stream = body.stream or ""
            if isinstance(a, int) and isinstance(b, int) and not opaque:
                span = list(range(a, b + 1))
                if len(span) > _DECLARED_LIMIT:
                    span = [a, b]
                for p in span:
                    marks.append(
                        Mark(clock[op.index], op.time, "declared_lost", p, float(p), stream)
                    )
    return marks
