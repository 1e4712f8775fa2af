"""``report.md``: the execution report a team puts in a pull request.

Built only from a ``RunResult`` (results.json): every figure in it was measured in that run.
It follows the original execution report's shape (summary, failures, per-scenario results,
performance, environment, recommendations) and adds a fault timeline per scenario.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

from harness.checkers import percentile
from harness.history import (
    AdvanceClock,
    Connect,
    Delivered,
    Disconnect,
    Failure,
    FaultAction,
    Op,
    Outcome,
    Resume,
)
from harness.report.figures import durations_by_operation, resume_outcomes
from harness.results import VERDICT_TEXT, RunResult, ScenarioResult, StepResult

_ICON = {"passed": "✅", "failed": "❌", "error": "⚠️", "skipped": "⏭️"}
_HINTS = {
    "delivery": "a message was lost, doubled or reordered on the way to the client: check the "
    "replay buffer and the resume's starting point",
    "history": "the stored conversation differs from what the client sent: check that each "
    "request is stored once, before it is acknowledged",
    "context": "agent state changed across the reconnection: check what the store keeps and "
    "what expiry or restore drops",
    "windows": "the resume outcome disagrees with the windows the server advertised",
    "latency": "an operation was slower than its threshold",
    "metrics": "a server metric crossed its threshold",
    "resume": "the resume outcome was not the expected one",
    "replies": "a message the client sent has no complete reply at that client: lost on the "
    "way up, or not replayed, or delivered to another connection",
}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def render(record: RunResult) -> str:
    """The whole report."""
    totals = record.totals
    result = VERDICT_TEXT[record.verdict]
    if record.verdict == "nothing_verified":
        result += " (no scenario passed" + (
            "; allowed by --allow-skipped)" if record.allow_skipped else ")"
        )
    lines = [
        "# WebSocket session-continuity execution report",
        "",
        f"**Suite:** `{record.suite or 'scenarios'}`  ",
        f"**Date:** {record.started}  ",
        f"**Target:** {record.environment.get('target', 'unknown')}  ",
        f"**Scenarios:** {totals['total']} — {totals['passed']} passed, {totals['failed']} failed, "
        f"{totals['error']} errors, {totals['skipped']} skipped  ",
        f"**Result:** {result}  ",
        f"**Wall time:** {record.seconds:.1f} s" + _virtual_note(record.scenarios),
        "",
        "## Summary",
        "",
        *_summary(record),
        "",
    ]
    lines += _skipped(record.scenarios)
    lines += _failures(record.scenarios)
    lines += ["## Results per scenario", ""]
    for scenario in record.scenarios:
        lines += _scenario(scenario)
    lines += _performance(record.scenarios)
    lines += ["## Environment", ""]
    lines += [f"- **{k}:** {v}" for k, v in record.environment.items()]
    lines += [f"- **seed:** {record.seed}" if record.seed is not None else "- **seed:** none given"]
    clocks = sorted({s.clock or "none" for s in record.scenarios})
    lines += [f"- **clock:** {', '.join(clocks)}", f"- **tool:** {record.tool}", ""]
    lines += _recommendations(record.scenarios)
    return "\n".join(lines).rstrip() + "\n"


def _virtual_note(scenarios: Sequence[ScenarioResult]) -> str:
    virtual = sum(s.virtual_seconds for s in scenarios)
    return f" (while {virtual / 60:.1f} min of virtual time passed)" if virtual else ""


def _summary(record: RunResult) -> list[str]:
    out: list[str] = []
    if record.verdict == "nothing_verified":
        out.append(
            f"- **Nothing verified:** no scenario passed; {record.totals['skipped']} skipped "
            "(reasons below). This run says nothing about the target."
        )
    outcomes = [o for s in record.scenarios for o in resume_outcomes(s.history)]
    if outcomes:
        full = sum(o.kind == "full" for o in outcomes)
        degraded = sum(o.kind == "degraded" for o in outcomes)
        rejected = sum(o.kind == "rejected" for o in outcomes)
        out.append(
            f"- **Resumes:** {len(outcomes)}: {full} full, {degraded} degraded, "
            f"{rejected} rejected."
        )
    delivery = [
        v for s in record.scenarios for st in s.steps for v in st.verdicts if v.check == "delivery"
    ]
    if delivery:
        kept = sum(v.passed for v in delivery)
        opaque = {s.positions for s in record.scenarios} == {"opaque"}
        judged = (
            "found no message twice by its position (the driver's positions are opaque: loss "
            "and order are judged by the replies)"
            if opaque
            else "found every message once and in order"
        )
        out.append(
            f"- **Continuity:** {kept} of {len(delivery)} delivery checks {judged} "
            f"({kept / len(delivery):.0%})."
        )
    ratios = [
        (st.path, s.name, v.evidence.get("ratio"))
        for s in record.scenarios
        for st in s.steps
        for v in st.verdicts
        if v.check == "context" and v.evidence.get("ratio") is not None
    ]
    if ratios:
        values = [float(r) for _, _, r in ratios if r is not None]
        out.append(
            f"- **Context preserved:** lowest {min(values):.1%} over {len(values)} checks "
            f"(mean {statistics.fmean(values):.1%})."
        )
    durations = [d for s in record.scenarios for d in durations_by_operation(s).get("resume", [])]
    if durations:
        out.append(
            f"- **Resume latency:** p50 {_ms(percentile(durations, 50))}, p95 "
            f"{_ms(percentile(durations, 95))}, max {_ms(max(durations))} "
            f"({len(durations)} resumes)."
        )
    return out or ["- Nothing was measured."]


def _skipped(scenarios: Sequence[ScenarioResult]) -> list[str]:
    skipped = [s for s in scenarios if s.status == "skipped"]
    if not skipped:
        return []
    lines = ["## Skipped", "", "| scenario | why |", "|---|---|"]
    for scenario in skipped:
        why = (scenario.error or "no reason given").replace("|", "\\|")
        lines.append(f"| {scenario.name} | {why} |")
    return [*lines, ""]


def _failures(scenarios: Sequence[ScenarioResult]) -> list[str]:
    bad = [s for s in scenarios if s.status in ("failed", "error")]
    if not bad:
        return []
    lines = ["## Failures", ""]
    for scenario in bad:
        step = scenario.first_failure
        lines.append(f"### {_ICON[scenario.status]} {scenario.name}")
        lines.append("")
        lines.append(f"- **File:** `{scenario.file}`")
        if step is not None:
            lines.append(f"- **Step {step.path}** (`{step.kind}`): {step.message}")
            if step.expected:
                lines.append(f"- **Expected:** {step.expected}")
                lines.append(f"- **Seen:** {step.seen}")
            failed = next((v for v in step.verdicts if not v.passed), None)
            if failed is not None and failed.evidence:
                evidence = ", ".join(f"{k}={v}" for k, v in failed.evidence.items())
                lines.append(f"- **Evidence:** {evidence}")
            hint = _HINTS.get(failed.check if failed else "", "")
            if hint:
                lines.append(f"- **Hint:** {hint}")
        if scenario.error:
            lines.append(f"- **Error:** {scenario.error}")
        lines.append("")
    return lines


def _scenario(scenario: ScenarioResult) -> list[str]:
    lines = [
        f"### {_ICON.get(scenario.status, '')} {scenario.name}",
        "",
        f"`{scenario.file}` — {scenario.status.upper()} in {scenario.seconds:.2f} s"
        + (f", {scenario.virtual_seconds:g} s virtual" if scenario.virtual_seconds else "")
        + (f" — {scenario.error}" if scenario.error else ""),
        "",
    ]
    if scenario.steps:
        lines += ["| step | kind | result | what happened |", "|---|---|---|---|"]
        lines += _step_rows(scenario.steps)
        lines.append("")
    timeline = _timeline(scenario.history)
    if timeline:
        lines += ["<details><summary>Fault timeline</summary>", "", *timeline, "", "</details>", ""]
    return lines


GROUPED_FROM = 6
"""A step that this many clients of a `parallel` group ran or more is one row, not one each."""
LISTED_PER_GROUP = 10
"""The clients of such a row that did not pass, listed under it (the rest are counted)."""


def _step_rows(steps: Sequence[StepResult]) -> list[str]:
    """One row per step; the same step of many clients of a `parallel` group as one row
    (`1.*.3`) with its counts, followed by the clients of it that did not pass, so that the
    report of a herd of 1,000 stays a page (a pull-request comment holds 65,536 characters)."""
    groups: dict[tuple[str, str], list[StepResult]] = {}
    for step in steps:
        key = _group_key(step)
        if key is not None:
            groups.setdefault((key, step.kind), []).append(step)
    rows: list[str] = []
    shown: set[tuple[str, str]] = set()
    for step in steps:
        key = _group_key(step)
        members = groups.get((key, step.kind), []) if key is not None else []
        if key is None or len(members) < GROUPED_FROM:
            rows.append(_row(step.path, step.kind, step.status, step.message))
            continue
        if (key, step.kind) in shown:
            continue
        shown.add((key, step.kind))
        rows += _group_rows(key, step.kind, members)
    return rows


def _group_key(step: StepResult) -> str | None:
    """``1.*.3`` for step ``1.crowd7.3`` of client ``crowd7`` of the group at step 1; None for
    a step that is no group member's."""
    if not step.client:
        return None
    parts = step.path.split(".")
    if step.client not in parts[1:-1]:
        return None
    at = parts.index(step.client, 1)
    return ".".join([*parts[:at], "*", *parts[at + 1 :]])


def _group_rows(key: str, kind: str, members: Sequence[StepResult]) -> list[str]:
    statuses = Counter(m.status for m in members)
    result = ", ".join(f"{n} {status}" for status, n in statuses.most_common())
    messages = Counter(m.message for m in members if m.status == "passed")
    if len(messages) <= 2:
        seen = "; ".join(f"{text} ({n})" for text, n in messages.most_common())
    else:  # answers that differ in a figure (a gap, a time): one for the shape, and a count
        seen = f"{len(messages)} different answers, e.g. {messages.most_common(1)[0][0]}"
    rows = [_row(key, f"{kind} ({len(members)} clients)", result, seen)]
    failed = [m for m in members if m.status != "passed"]
    for member in failed[:LISTED_PER_GROUP]:
        rows.append(_row(member.path, member.kind, member.status, member.message))
    if len(failed) > LISTED_PER_GROUP:
        more = len(failed) - LISTED_PER_GROUP
        rows.append(_row("…", kind, f"{more} more", "listed in report.html and results.json"))
    return rows


def _row(path: str, kind: str, status: str, message: str) -> str:
    return f"| {path} | {kind} | {status} | {message.replace('|', chr(92) + '|')} |"


def _timeline(ops: Iterable[Op], limit: int = 60) -> list[str]:
    """A mermaid sequence diagram of connections, faults, clock jumps and resumes."""
    notes: list[str] = []
    invoked: dict[int, Op] = {}
    seen: set[tuple[str, str, object]] = set()
    for op in ops:
        t = f"{op.time:.2f}s"
        body = op.body
        if op.phase == "invoke":
            invoked[op.id] = op
        if isinstance(body, FaultAction) and op.phase == "invoke":
            if body.action not in ("create", "delete"):
                detail = body.toxic_type or ""
                notes.append(f"    Note over Proxy: {t} {body.action} {detail}".rstrip())
        elif isinstance(body, AdvanceClock) and op.phase == "invoke":
            notes.append(f"    Note over Server: {t} clock +{body.seconds:g}s")
        elif isinstance(body, Disconnect):
            notes.append(f"    Client--xProxy: {t} {op.process} {body.how}")
        elif (
            op.phase in ("ok", "fail")
            and op.id in invoked
            and isinstance(invoked[op.id].body, Resume | Connect)
        ):
            kind = "resume" if isinstance(invoked[op.id].body, Resume) else "connect"
            if isinstance(body, Outcome):
                reason = f" ({body.reason})" if body.reason else ""
                notes.append(f"    Client->>Server: {t} {op.process} {kind} {body.kind}{reason}")
            elif isinstance(body, Failure):
                notes.append(f"    Client-xServer: {t} {op.process} {kind} failed")
        elif isinstance(body, Delivered):
            key = (op.process, body.stream, body.position)
            if key in seen:
                notes.append(
                    f"    Server-->>Client: {t} {op.process} position {body.position} again"
                )
            seen.add(key)
    if not notes:
        return []
    if len(notes) > limit:
        notes = [*notes[:limit], f"    Note over Client: ... {len(notes) - limit} more events"]
    return [
        "```mermaid",
        "sequenceDiagram",
        "    participant Client",
        "    participant Proxy",
        "    participant Server",
        *notes,
        "```",
    ]


def _performance(scenarios: Sequence[ScenarioResult]) -> list[str]:
    rows = []
    per_scenario = [durations_by_operation(s) for s in scenarios]
    for operation in ("connect", "resume", "chat", "history", "context"):
        values = [d for figures in per_scenario for d in figures.get(operation, [])]
        if values:
            rows.append(
                f"| {operation} | {len(values)} | {_ms(percentile(values, 50))} | "
                f"{_ms(percentile(values, 95))} | {_ms(max(values))} |"
            )
    if not rows:
        return []
    return [
        "## Performance",
        "",
        "Measured by the harness's client, through the proxy, in this run.",
        "",
        "| operation | count | p50 | p95 | max |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _recommendations(scenarios: Sequence[ScenarioResult]) -> list[str]:
    items: list[str] = []
    for scenario in scenarios:
        step: StepResult | None = scenario.first_failure
        if step is None:
            continue
        failed = next((v for v in step.verdicts if not v.passed), None)
        check = failed.check if failed else step.kind
        hint = _HINTS.get(check, f"investigate the `{step.kind}` step")
        items.append(f"- **{scenario.name}**, step {step.path}: {hint}.")
    for scenario in scenarios:
        for step in scenario.steps:
            for verdict in step.verdicts:
                ratio = verdict.evidence.get("ratio")
                if (
                    verdict.passed
                    and verdict.check == "context"
                    and ratio is not None
                    and ratio < 1
                ):
                    items.append(
                        f"- **{scenario.name}**: context kept {float(ratio):.1%}, close to its "
                        "threshold; find out which values were lost."
                    )
    if not items:
        return [
            "## Recommendations",
            "",
            "- None: nothing failed or came close to a threshold.",
            "",
        ]
    return ["## Recommendations", "", *items, ""]
