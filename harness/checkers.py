"""Checkers: pure functions from the recorded history to a verdict with its evidence.

They read only the history (``harness.history``) and the driver's declaration of how its
positions order (``PositionModel``), so they work for any driver and give the same verdict
when a saved history is judged again (``harness check``). Each verdict names the first thing
that went wrong: the first lost, doubled or reordered position, the context keys that differ.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from harness.driver.base import PositionModel
from harness.history import (
    Closed,
    Connect,
    Delivered,
    Notice,
    Op,
    Outcome,
    Position,
    Resume,
    SendMessage,
    Sent,
    Turn,
    Violation,
)
from harness.scenario.durations import Threshold


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """One check's result."""

    check: str
    passed: bool
    message: str
    """What was seen."""
    evidence: dict[str, Any] = {}
    expected: str = ""
    """What should have been seen, when the check's name does not say it."""


# --- what the history says about one client ---------------------------------------------------


@dataclass
class ClientView:
    """One client's part of a history, gathered in one pass."""

    outcomes: list[Outcome] = field(default_factory=list)
    """Every completed connect or resume, in order (rejections too)."""
    deliveries: dict[str, list[Delivered]] = field(default_factory=dict)
    """By stream, in arrival order."""
    starts: dict[str, Position] = field(default_factory=dict)
    """The position each stream continues after for this client (its earliest ``after``)."""
    declared_missed: dict[str, list[tuple[Position, Position]]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    """Since the client's last new session."""
    closed: list[Closed] = field(default_factory=list)
    session: str | None = None
    """The session the client holds (or last held) at the end of the slice."""
    attached: set[str] = field(default_factory=set)
    """Every stream the client was given by a connect or resume that succeeded."""


def client_view(ops: Sequence[Op], client: str) -> ClientView:
    """Everything about ``client`` the history up to the end of ``ops`` holds."""
    view = ClientView()
    for op in ops:
        if op.process != client:
            continue
        body = op.body
        if isinstance(body, Outcome) and op.phase == "ok":
            view.outcomes.append(body)
            if body.kind == "new":
                view.notices.clear()
            if body.kind in ("new", "full", "degraded"):
                view.session = body.session
                if body.stream is not None:
                    stream = body.stream
                    view.attached.add(stream)
                    view.deliveries.setdefault(stream, [])
                    if body.after is not None:
                        known = view.starts.get(stream)
                        if known is None or _less(body.after, known):
                            view.starts[stream] = body.after
                    if body.missed is not None:
                        view.declared_missed.setdefault(stream, []).append(body.missed)
        elif isinstance(body, Delivered):
            view.deliveries.setdefault(body.stream, []).append(body)
        elif isinstance(body, Violation):
            view.violations.append(body.message)
        elif isinstance(body, Notice):
            view.notices.append(body)
        elif isinstance(body, Closed):
            view.closed.append(body)
    return view


def _less(a: Position, b: Position) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a < b
    return False


def sent_in_session(ops: Sequence[Op], session: str | None) -> list[tuple[str, str]]:
    """(message id, text) of every message sent in ``session``, by any client, in order.

    A message belongs to the session its client held when it sent it (a client that took a
    session over inherits what was sent in it)."""
    holding: dict[str, str | None] = {}
    texts: dict[int, str] = {}
    out: list[tuple[str, str]] = []
    for op in ops:
        body = op.body
        if isinstance(body, Outcome) and op.phase == "ok" and body.kind != "rejected":
            holding[op.process] = body.session
        elif isinstance(body, SendMessage) and op.phase == "invoke":
            texts[op.id] = body.text
        elif (
            isinstance(body, Sent)
            and op.id in texts
            and session is not None
            and holding.get(op.process) == session
        ):
            out.append((body.message_id, texts[op.id]))
    return out


def attempts(ops: Sequence[Op], client: str) -> list[tuple[Op, Op | None]]:
    """Each connect or resume attempt of the client: its invocation and completion."""
    done = {op.id: op for op in ops if op.phase != "invoke"}
    return [
        (op, done.get(op.id))
        for op in ops
        if op.process == client and op.phase == "invoke" and isinstance(op.body, Connect | Resume)
    ]


# --- resumes decided at the same time (§7.5) -------------------------------------------------


ABNORMAL_CLOSURE = 1006
"""RFC 6455 §7.1.5: the connection closed without a close frame (no one closed it on purpose)."""


@dataclass(frozen=True)
class RaceAnswer:
    """What one client of a race got: its resume's answer, and whether the target closed its
    connection after accepting it."""

    client: str
    answer: Outcome | None
    """None: no answer (the attempt failed or never completed)."""
    error: str | None = None
    closed: Closed | None = None
    """The first close of its connection by the target (with a code the target sent) the
    client saw after presenting its resume."""

    @property
    def accepted(self) -> bool:
        return self.answer is not None and self.answer.kind in ("full", "degraded")

    @property
    def holds(self) -> bool:
        """Accepted and not closed since: the client holds the session."""
        return self.accepted and self.closed is None

    def describe(self) -> str:
        if self.answer is None:
            return f"{self.client}: no answer ({self.error or 'never completed'})"
        said = self.answer.kind + (f" ({self.answer.reason})" if self.answer.reason else "")
        if self.answer.retry_after is not None:
            said += f", retry after {self.answer.retry_after:g} s"
        if self.closed is not None:
            said += f", then closed {self.closed.code} ({self.closed.reason})"
        return f"{self.client}: {said}"


def race_answers(ops: Sequence[Op], clients: Sequence[str]) -> list[RaceAnswer]:
    """Each racing client's last resume in ``ops`` (a race step's own operations), and the
    first close of its connection it saw after presenting it."""
    out = []
    for client in clients:
        tries = [t for t in attempts(ops, client) if isinstance(t[0].body, Resume)]
        if not tries or tries[-1][1] is None:
            out.append(RaceAnswer(client, None))
            continue
        invoked, done = tries[-1]
        assert done is not None
        if not isinstance(done.body, Outcome):
            error = getattr(done.body, "error", None)
            out.append(RaceAnswer(client, None, error=error))
            continue
        # After the invocation, not the answer: a takeover's close can be observed before
        # the call that was accepted returns. The racer had no other connection open then.
        # Only a close the target made counts (a code it sent; not 1006, a connection lost).
        closed = next(
            (
                op.body
                for op in ops
                if op.process == client
                and op.index > invoked.index
                and isinstance(op.body, Closed)
                and op.body.code not in (None, ABNORMAL_CLOSURE)
            ),
            None,
        )
        out.append(RaceAnswer(client, done.body, closed=closed))
    return out


def race(answers: Sequence[RaceAnswer], lost: str) -> Verdict:
    """§7.5: of resumes of one resumable session presented at once, at least one is accepted
    and at most one client holds the session at the end, exactly one when all were accepted
    (each took it over in turn); a resume that lost the race is rejected with ``lost`` and a
    hint of when to retry, and only when another was accepted; every other client was
    rejected, or accepted and then closed by the target."""
    said = "; ".join(a.describe() for a in answers)
    evidence: dict[str, Any] = {"answers": [a.describe() for a in answers]}
    silent = [a for a in answers if a.answer is None]
    if silent:
        return Verdict(
            check="race",
            passed=False,
            message=said,
            expected="an answer to every resume",
            evidence=evidence,
        )
    holders = [a for a in answers if a.holds]
    accepted = [a for a in answers if a.accepted]
    losers = [a for a in answers if a.answer is not None and a.answer.reason == lost]
    if len(holders) > 1:
        return Verdict(
            check="race",
            passed=False,
            message=f"{len(holders)} clients hold the session: {said}",
            expected="at most one winner",
            evidence=evidence,
        )
    if not accepted:
        return Verdict(
            check="race",
            passed=False,
            message=f"no resume was accepted: {said}",
            expected="one resume accepted (one server would have accepted the first)",
            evidence=evidence,
        )
    if len(accepted) == len(answers) and not holders:
        # Every resume accepted: one took the session over from the other, in some order, and
        # one server would have left the last one holding it (a takeover closes only the
        # connection it displaced, §7.3).
        return Verdict(
            check="race",
            passed=False,
            message=f"every resume was accepted and every connection closed: {said}",
            expected="the last resume to take the session over holding it",
            evidence=evidence,
        )
    unhinted = [a for a in losers if a.answer is not None and a.answer.retry_after is None]
    if unhinted:
        return Verdict(
            check="race",
            passed=False,
            message=f"a lost race without a retry hint: {said}",
            expected=f"a resume that lost the race rejected {lost} with a retry hint",
            evidence=evidence,
        )
    # Which of §7.5's cases it was: a resume lost the race; or they were decided one after
    # another, each taking the session over (all accepted); or a later one was refused (its
    # token consumed: revoked, or another refusal).
    kind = "raced" if losers else ("taken over" if len(accepted) == len(answers) else "refused")
    winner = holders[0].client if holders else "no one (the session ended)"
    return Verdict(
        check="race",
        passed=True,
        message=f"{kind}, held by {winner}: {said}",
        evidence={**evidence, "kind": kind, "holder": holders[0].client if holders else None},
    )


# --- delivery ---------------------------------------------------------------------------------


def delivery(
    view: ClientView,
    positions: PositionModel,
    *,
    no_loss: bool = True,
    no_duplicates: bool = True,
    order: bool = True,
) -> Verdict:
    """Every position arrived once, in order, except ranges the server declared lost, and only
    on streams the client was given.

    A duplicate is a position that arrived twice; a reordering a position that arrived after a
    later one had; a loss a position between the stream's start and the last one that arrived,
    never delivered and not declared lost. How positions order is the driver's declaration."""
    total = 0
    for stream, delivered in view.deliveries.items():
        got = [d.position for d in delivered]
        total += len(got)
        if got and stream not in view.attached:
            # Whatever the target promises, a client gets only what belongs to its sessions.
            return Verdict(
                check="delivery",
                passed=False,
                message=f"{len(got)} messages arrived on stream {stream}, which no connect or "
                "resume of this client was given",
                evidence={"stream": stream, "positions": got[:20]},
            )
        if no_duplicates:
            doubled = sorted((p for p, n in Counter(got).items() if n > 1), key=_sort_key)
            if doubled:
                return Verdict(
                    check="delivery",
                    passed=False,
                    message=f"position {doubled[0]} was delivered twice "
                    f"({len(doubled)} duplicated in all)",
                    evidence={"stream": stream, "duplicated": doubled[:20]},
                )
        if order and (went_on := _reply_went_on(delivered)) is not None:
            reply_to, final, later = went_on
            return Verdict(
                check="delivery",
                passed=False,
                message=f"the reply to {reply_to} went on after its final part: position "
                f"{later} arrived after the final one, {final}",
                evidence={"stream": stream, "reply_to": reply_to, "final": final, "after": later},
            )
        if positions.order == "opaque":
            continue
        ints = [p for p in got if isinstance(p, int)]
        if order:
            highest: int | None = None
            for i, p in enumerate(ints):
                if highest is not None and p < highest and p not in ints[:i]:
                    return Verdict(
                        check="delivery",
                        passed=False,
                        message=f"position {p} arrived after {highest} (reordered)",
                        evidence={"stream": stream, "around": ints[max(0, i - 3) : i + 3]},
                    )
                highest = p if highest is None else max(highest, p)
        if no_loss and positions.order == "dense" and ints:
            start = view.starts.get(stream)
            first = (start + 1) if isinstance(start, int) else min(ints)
            declared = {
                p
                for a, b in view.declared_missed.get(stream, [])
                if isinstance(a, int) and isinstance(b, int)
                for p in range(a, b + 1)
            }
            have = set(ints) | declared
            lost = [p for p in range(first, max(ints) + 1) if p not in have]
            if lost:
                return Verdict(
                    check="delivery",
                    passed=False,
                    message=f"position {lost[0]} never arrived and the server did not declare "
                    "it lost",
                    evidence={"stream": stream, "lost": lost[:20], "lost_count": len(lost)},
                )
    if view.violations:
        return Verdict(
            check="delivery",
            passed=False,
            message=f"the server broke the protocol: {view.violations[0]}",
            evidence={"violations": view.violations[:10]},
        )
    declared_count = sum(
        (b - a + 1) if isinstance(a, int) and isinstance(b, int) else 1
        for ranges in view.declared_missed.values()
        for a, b in ranges
    )
    judged = "each once" if positions.order == "opaque" else "each once, in order"
    if positions.order == "opaque":
        judged += " (opaque positions: order and loss are judged by the replies, not here)"
    declared_note = f", {declared_count} declared lost by the server" if declared_count else ""
    return Verdict(
        check="delivery",
        passed=True,
        message=f"{total} messages, {judged}{declared_note}",
    )


def _reply_went_on(delivered: Sequence[Delivered]) -> tuple[str, Position, Position] | None:
    """The first reply a new part of which arrived after its final part: (what it replies
    to, the final part's position, the later part's). A position seen before (a replayed
    duplicate) is not a new part."""
    ended: dict[str, Position] = {}
    seen: set[Position] = set()
    for d in delivered:
        new = d.position not in seen
        seen.add(d.position)
        if d.kind != "reply" or d.reply_to is None or not new:
            continue
        if d.reply_to in ended:
            return d.reply_to, ended[d.reply_to], d.position
        if d.final:
            ended[d.reply_to] = d.position
    return None


def _sort_key(p: Position) -> tuple[int, int | str]:
    return (0, p) if isinstance(p, int) else (1, p)


def reply_parts(view: ClientView, message_id: str) -> tuple[int, bool]:
    """How many parts of the reply to ``message_id`` arrived, and whether a final one did."""
    parts = [d for ds in view.deliveries.values() for d in ds if d.reply_to == message_id]
    return len(parts), any(d.final for d in parts)


def replies(view: ClientView, sent: Sequence[tuple[str, str]]) -> Verdict:
    """Each message sent in the client's session has a complete reply at this client (its
    final part arrived), whatever connection brought it."""
    for message_id, text in sent:
        parts, final = reply_parts(view, message_id)
        if not final:
            return Verdict(
                check="replies",
                passed=False,
                message=f"message {message_id} ({text!r}) has no complete reply at this client "
                f"({parts} parts arrived)",
                evidence={"message_id": message_id, "parts": parts, "sent": len(sent)},
            )
    return Verdict(
        check="replies",
        passed=True,
        message=f"all {len(sent)} messages sent in the session have their complete reply",
    )


# --- stored conversation and context ------------------------------------------------------------


def history(
    turns: Sequence[Turn],
    sent: Sequence[tuple[str, str]],
    *,
    count: int | None = None,
    order: bool = True,
    no_loss: bool = True,
    no_duplicates: bool = True,
    contains: Sequence[str] = (),
) -> Verdict:
    """The server's stored conversation holds each sent message once, in order, with its text."""
    user_turns = [t for t in turns if t.role == "user"]
    if count is not None and len(turns) != count:
        return Verdict(
            check="history",
            passed=False,
            message=f"the server holds {len(turns)} turns, expected {count}",
            evidence={"turns": len(turns)},
        )
    if order and [t.index for t in turns] != sorted(t.index for t in turns):
        return Verdict(check="history", passed=False, message="stored turns are out of order")
    if no_duplicates:
        ids = Counter(t.message_id for t in user_turns)
        doubled = [i for i, n in ids.items() if n > 1]
        if doubled:
            return Verdict(
                check="history",
                passed=False,
                message=f"message {doubled[0]} is stored {ids[doubled[0]]} times",
            )
    stored = {t.message_id: t.text for t in user_turns}
    if no_loss:
        for message_id, text in sent:
            if message_id not in stored:
                return Verdict(
                    check="history",
                    passed=False,
                    message=f"sent message {message_id} ({text!r}) is not in the server's history",
                    evidence={"missing": message_id},
                )
            if stored[message_id] != text:
                return Verdict(
                    check="history",
                    passed=False,
                    message=f"message {message_id} is stored as {stored[message_id]!r}, "
                    f"sent as {text!r}",
                )
    if order:
        sent_ids = dict(sent)
        positions = [t.message_id for t in user_turns if t.message_id in sent_ids]
        expected = [i for i, _ in sent if i in stored]
        if positions != expected:
            return Verdict(
                check="history", passed=False, message="sent messages are stored in another order"
            )
    for text in contains:
        if not any(text in t.text for t in turns):
            return Verdict(
                check="history", passed=False, message=f"no stored turn contains {text!r}"
            )
    kept = sum(1 for message_id, _ in sent if message_id in stored)
    # Without `no_loss` a sent message may be missing: say how many are there, not "all".
    which = f"all {len(sent)}" if kept == len(sent) else f"{kept} of {len(sent)}"
    how = "once" + (", in order" if order else "")
    return Verdict(
        check="history",
        passed=True,
        message=f"{len(turns)} turns stored; {which} sent messages {how}",
    )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested mapping/list, by dotted path; lists keep their indexes."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out if out else {prefix: {}} if prefix else {}
    if isinstance(value, list | tuple):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out if out else {prefix: []} if prefix else {}
    return {prefix: value}


def _has_children(flat: Mapping[str, Any], path: str, empty: Any) -> bool:
    """Whether ``flat`` holds entries under ``path``, of the kind of container ``empty`` is."""
    below = path + ("[" if isinstance(empty, list) else ".")
    return any(k.startswith(below) for k in flat)


def context(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    preserved: Threshold | None = None,
    keys: Sequence[str] = (),
) -> Verdict:
    """The context after equals the one before, or keeps at least the stated share of it.

    The share is over the leaves of the earlier context: a leaf counts as kept when the later
    context has the same value at the same path. Leaves added since are not losses.
    """
    old, new = flatten(before), flatten(after)
    if keys:
        absent = [p for p in keys if p not in before]
        if absent:
            return Verdict(
                check="context",
                passed=False,
                message=f"the snapshot's context has no key {absent[0]!r} to compare",
                evidence={"absent": absent, "has": sorted(map(str, before))},
            )
        # A top-level list (the tool-call history) flattens to `key[0]...`, a mapping to `key.x`.
        old = {
            k: v
            for k, v in old.items()
            if any(k == p or k.startswith((p + ".", p + "[")) for p in keys)
        }
    # An empty mapping or list is a leaf of its own; entries added to it since are not losses.
    grown = {
        k for k, v in old.items() if v in ({}, []) and k not in new and _has_children(new, k, v)
    }
    kept = [k for k, v in old.items() if (k in new and new[k] == v) or k in grown]
    differ = sorted(set(old) - set(kept))
    ratio = len(kept) / len(old) if old else 1.0
    evidence = {"kept": len(kept), "of": len(old), "ratio": round(ratio, 4), "differ": differ[:20]}
    if preserved is None:
        if differ:
            return Verdict(
                check="context",
                passed=False,
                message=f"{len(differ)} context values changed, first {differ[0]}",
                evidence=evidence,
            )
        return Verdict(
            check="context",
            passed=True,
            message=f"all {len(old)} context values equal",
            evidence=evidence,
        )
    ok = preserved.holds(ratio)
    message = f"{ratio:.1%} of {len(old)} context values kept (need {preserved})"
    return Verdict(check="context", passed=ok, message=message, evidence=evidence)


# --- outcomes, latency, metrics -----------------------------------------------------------------


def outcome_consistent(outcome: Outcome) -> Verdict:
    """A resume's outcome agrees with the windows the target advertised and the gap it saw."""
    terms = outcome.terms
    if terms is None or outcome.gap_s is None or outcome.kind == "rejected":
        return Verdict(
            check="windows", passed=True, message="no advertised windows or gap to compare"
        )
    full, resumable = terms.full_window_s, terms.resumable_window_s
    if full is None or resumable is None:
        return Verdict(check="windows", passed=True, message="target advertises no windows")
    expected = (
        "full" if outcome.gap_s <= full else "degraded" if outcome.gap_s <= resumable else None
    )
    warned = outcome.kind == "degraded" and bool(outcome.warnings)
    fine = outcome.kind == expected or (
        expected == "full" and outcome.kind == "degraded" and warned  # e.g. an epoch change
    )
    message = (
        f"gap {outcome.gap_s:.1f} s gave {outcome.kind}; windows {full:g} s / {resumable:g} s "
        f"say {expected or 'expired'}"
    )
    return Verdict(
        check="windows",
        passed=fine,
        message=message,
        evidence={"gap_s": outcome.gap_s, "outcome": outcome.kind},
    )


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``; nan when there are none.

    The one definition used by checkers, reports and benchmarks, so a report never shows a
    figure computed differently from the one a threshold was judged on."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency(operation: str, durations: Sequence[float], limits: Mapping[str, Threshold]) -> Verdict:
    """Each stated statistic of the operation's durations meets its threshold."""
    if not durations:
        return Verdict(
            check="latency",
            passed=False,
            message=f"no completed {operation} operation was measured",
        )
    stats = _stats(durations)
    evidence: dict[str, Any] = {k: round(v, 6) for k, v in stats.items()} | {"n": len(durations)}
    for name, threshold in limits.items():
        if not threshold.holds(stats[name]):
            return Verdict(
                check="latency",
                passed=False,
                message=f"{operation} {name} was {stats[name] * 1000:.1f} ms, needed {threshold}",
                evidence=evidence,
            )
    wanted = ", ".join(f"{k} {v}" for k, v in limits.items())
    return Verdict(
        check="latency",
        passed=True,
        message=f"{operation} over {len(durations)} runs: {wanted}",
        evidence=evidence,
    )


def latency_ratio(
    operation: str,
    durations: Sequence[float],
    against: str,
    baseline: Sequence[float],
    limits: Mapping[str, Threshold],
) -> Verdict:
    """Each stated statistic of ``operation`` divided by the same statistic of ``against``
    (both measured in this run) meets its bound."""
    if not durations or not baseline:
        missing = operation if not durations else against
        return Verdict(
            check="latency", passed=False, message=f"no completed {missing} operation was measured"
        )
    mine, theirs = _stats(durations), _stats(baseline)
    ratios = {k: mine[k] / theirs[k] if theirs[k] > 0 else math.inf for k in mine}
    evidence: dict[str, Any] = (
        {f"{k}_ratio": round(v, 3) for k, v in ratios.items() if k in limits}
        | {f"{operation}_{k}": round(mine[k], 6) for k in limits}
        | {f"{against}_{k}": round(theirs[k], 6) for k in limits}
        | {
            "n": len(durations),
            "baseline_n": len(baseline),
        }
    )
    for name, threshold in limits.items():
        if not threshold.holds(ratios[name]):
            return Verdict(
                check="latency",
                passed=False,
                message=f"{operation} {name} was {ratios[name]:.2f}x {against}'s "
                f"({mine[name] * 1000:.1f} ms against {theirs[name] * 1000:.1f} ms), "
                f"needed {threshold}",
                evidence=evidence,
            )
    wanted = ", ".join(f"{k} {ratios[k]:.2f}x ({v})" for k, v in limits.items())
    return Verdict(
        check="latency",
        passed=True,
        message=f"{operation} against {against} over {len(durations)} runs: {wanted}",
        evidence=evidence,
    )


def _stats(durations: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(durations, 50),
        "p95": percentile(durations, 95),
        "p99": percentile(durations, 99),
        "max": max(durations),
        "mean": sum(durations) / len(durations),
    }


def replies_stored(
    turns: Sequence[Turn], view: ClientView, sent: Sequence[tuple[str, str]]
) -> Verdict:
    """Each stored reply to a sent message has the text the client received for it (its
    parts in position order, each position once); messages with no complete reply received,
    or whose parts carry no text, are not compared."""
    parts: dict[str, dict[Position, Delivered]] = {}
    for delivered in view.deliveries.values():
        for d in delivered:
            if d.reply_to is not None and d.kind == "reply" and d.text is not None:
                parts.setdefault(d.reply_to, {}).setdefault(d.position, d)
    stored = {t.message_id: t.text for t in turns if t.role != "user"}
    compared = 0
    for message_id, _ in sent:
        received = parts.get(message_id)
        if not received or not any(d.final for d in received.values()):
            continue
        text = "".join(
            d.text or "" for _, d in sorted(received.items(), key=lambda kv: _sort_key(kv[0]))
        )
        if message_id not in stored:
            return Verdict(
                check="history",
                passed=False,
                message=f"the reply to {message_id} was received but the server stores none",
                evidence={"message_id": message_id, "received": text[:200]},
            )
        compared += 1
        if stored[message_id] != text:
            return Verdict(
                check="history",
                passed=False,
                message=f"the stored reply to {message_id} differs from the one received",
                evidence={
                    "message_id": message_id,
                    "stored": stored[message_id][:200],
                    "received": text[:200],
                },
            )
    return Verdict(
        check="history",
        passed=True,
        message=f"{compared} stored replies are the ones received",
    )


def metric_samples(text: str) -> dict[str, float]:
    """The first sample of each name in Prometheus text (labelled or not).

    Samples that are not finite (a summary's ``NaN`` quantile before any observation) are left
    out: no threshold judges them, and JSON has no way to write them (``results.json`` would
    hold ``null`` where a number must be)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in samples:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (ValueError, IndexError):
            continue
        if math.isfinite(value):
            samples[name] = value
    return samples


def metric_value(samples: Mapping[str, float] | None, name: str, threshold: Threshold) -> Verdict:
    """A metric's value meets its threshold."""
    if samples is None:
        return Verdict(check="metrics", passed=False, message="the target answered no metrics")
    if name not in samples:
        return Verdict(check="metrics", passed=False, message=f"metric {name} not found")
    value = samples[name]
    ok = threshold.holds(value)
    return Verdict(
        check="metrics",
        passed=ok,
        message=f"{name} = {value:g}" if ok else f"{name} is {value:g}, needed {threshold}",
        evidence={"value": value},
    )


def metric_growth(
    name: str,
    first: Mapping[str, float] | None,
    last: Mapping[str, float] | None,
    threshold: Threshold,
) -> Verdict:
    """The relative growth of a metric between two readings meets the threshold."""
    if first is None or last is None:
        return Verdict(check="metrics", passed=False, message="the target answered no metrics")
    if name not in first or name not in last:
        return Verdict(check="metrics", passed=False, message=f"metric {name} not found")
    a, b = first[name], last[name]
    growth = (b - a) / a if a else math.inf
    ok = threshold.holds(growth)
    message = f"{name} grew {growth:.2%} ({a:g} to {b:g}); needed {threshold}"
    return Verdict(
        check="metrics",
        passed=ok,
        message=message,
        evidence={"first": a, "last": b, "growth": growth},
    )
