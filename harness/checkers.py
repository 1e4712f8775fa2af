"""Checkers: pure functions from what was recorded to a verdict with its evidence.

They see neutral records only (deliveries by stream position, stored turns, context mappings,
outcomes, durations), so they work for any driver. Each verdict names the first thing that
went wrong: the first missing or duplicated position, the context keys that differ.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.driver.base import Anomalies, Delivery, Outcome, Terms, Turn
from harness.scenario.durations import Threshold


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check's result."""

    check: str
    passed: bool
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


def delivery(
    deliveries: Sequence[Delivery],
    anomalies: Anomalies,
    declared_missed: Iterable[tuple[int, int]] = (),
    *,
    no_loss: bool = True,
    no_duplicates: bool = True,
    order: bool = True,
) -> Verdict:
    """The client got every position once, in order, except ranges the server declared lost."""
    positions = [d.position for d in deliveries]
    missed = {p for first, last in declared_missed for p in range(first, last + 1)}
    if no_duplicates:
        repeated = sorted(p for p, n in Counter(positions).items() if n > 1)
        doubled = sorted(set(anomalies.duplicates) | set(repeated))
        if doubled:
            return Verdict(
                "delivery",
                False,
                f"position {doubled[0]} was delivered twice ({len(doubled)} duplicated in all)",
                {"duplicated": doubled[:20]},
            )
    if order and positions != sorted(positions):
        index = next(i for i in range(1, len(positions)) if positions[i] < positions[i - 1])
        return Verdict(
            "delivery",
            False,
            f"position {positions[index]} arrived after {positions[index - 1]}",
            {"around": positions[max(0, index - 3) : index + 3]},
        )
    if no_loss and positions:
        have = set(positions) | missed
        lost = [p for p in range(1, max(positions) + 1) if p not in have]
        if lost or anomalies.gaps:
            first = lost[0] if lost else anomalies.gaps[0][0]
            return Verdict(
                "delivery",
                False,
                f"position {first} never arrived and the server did not declare it lost",
                {"lost": lost[:20], "undeclared_gaps": anomalies.gaps[:10]},
            )
    if anomalies.protocol_errors:
        return Verdict(
            "delivery",
            False,
            f"the server broke the protocol: {anomalies.protocol_errors[0]}",
            {"errors": anomalies.protocol_errors[:10]},
        )
    declared = f", {len(missed)} declared lost by the server" if missed else ""
    return Verdict(
        "delivery", True, f"{len(positions)} messages, each once, in order{declared}", {}
    )


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
            "history",
            False,
            f"the server holds {len(turns)} turns, expected {count}",
            {"turns": len(turns)},
        )
    if order and [t.index for t in turns] != sorted(t.index for t in turns):
        return Verdict("history", False, "stored turns are out of order", {})
    if no_duplicates:
        ids = Counter(t.message_id for t in user_turns)
        doubled = [i for i, n in ids.items() if n > 1]
        if doubled:
            return Verdict(
                "history", False, f"message {doubled[0]} is stored {ids[doubled[0]]} times", {}
            )
    stored = {t.message_id: t.text for t in user_turns}
    if no_loss:
        for message_id, text in sent:
            if message_id not in stored:
                return Verdict(
                    "history",
                    False,
                    f"sent message {message_id} ({text!r}) is not in the server's history",
                    {"missing": message_id},
                )
            if stored[message_id] != text:
                return Verdict(
                    "history",
                    False,
                    f"message {message_id} is stored as {stored[message_id]!r}, sent as {text!r}",
                    {},
                )
    if order:
        positions = [t.message_id for t in user_turns if t.message_id in dict(sent)]
        expected = [i for i, _ in sent if i in stored]
        if positions != expected:
            return Verdict("history", False, "sent messages are stored in another order", {})
    for text in contains:
        if not any(text in t.text for t in turns):
            return Verdict("history", False, f"no stored turn contains {text!r}", {})
    return Verdict(
        "history", True, f"{len(turns)} turns stored; all {len(sent)} sent messages once, in order"
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
                "context",
                False,
                f"the snapshot's context has no key {absent[0]!r} to compare",
                {"absent": absent, "has": sorted(map(str, before))},
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
                "context",
                False,
                f"{len(differ)} context values changed, first {differ[0]}",
                evidence,
            )
        return Verdict("context", True, f"all {len(old)} context values equal", evidence)
    ok = preserved.holds(ratio)
    message = f"{ratio:.1%} of {len(old)} context values kept (need {preserved})"
    return Verdict("context", ok, message, evidence)


def outcome_consistent(outcome: Outcome, terms: Terms | None) -> Verdict:
    """A resume's outcome agrees with the windows the target advertised and the gap it saw."""
    if terms is None or outcome.gap_s is None or outcome.kind == "rejected":
        return Verdict("windows", True, "nothing to compare", {})
    full, resumable = terms.full_window_s, terms.resumable_window_s
    if full is None or resumable is None:
        return Verdict("windows", True, "target advertises no windows", {})
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
    return Verdict("windows", fine, message, {"gap_s": outcome.gap_s, "outcome": outcome.kind})


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
        return Verdict("latency", False, f"no completed {operation} operation was measured", {})
    stats = {
        "p50": percentile(durations, 50),
        "p95": percentile(durations, 95),
        "p99": percentile(durations, 99),
        "max": max(durations),
        "mean": sum(durations) / len(durations),
    }
    evidence = {k: round(v, 6) for k, v in stats.items()} | {"n": len(durations)}
    for name, threshold in limits.items():
        if not threshold.holds(stats[name]):
            return Verdict(
                "latency",
                False,
                f"{operation} {name} was {stats[name] * 1000:.1f} ms, needed {threshold}",
                evidence,
            )
    wanted = ", ".join(f"{k} {v}" for k, v in limits.items())
    return Verdict("latency", True, f"{operation} over {len(durations)} runs: {wanted}", evidence)


def metric_value(text: str, name: str) -> float | None:
    """The value of an unlabelled sample ``name`` in Prometheus text, if present."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def metric_growth(name: str, first: float, last: float, threshold: Threshold) -> Verdict:
    """The relative growth of a metric between two snapshots meets the threshold."""
    growth = (last - first) / first if first else math.inf
    ok = threshold.holds(growth)
    message = f"{name} grew {growth:.2%} ({first:g} to {last:g}); needed {threshold}"
    return Verdict("metrics", ok, message, {"first": first, "last": last, "growth": growth})
