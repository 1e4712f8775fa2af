"""``harness report --compare BASE NEW``: what changed from one run to another.

Scenarios are matched by name (by name and file when a run has two of the same name). The
comparison lists the scenarios whose verdict changed, the new failures with the evidence of
their first failed step, the latency figures of both runs with their ratio (new / base), and
the metrics that scenarios checked (resident memory, for one) with theirs. Every figure is one
that either run measured; nothing is judged here, so the command exits 0 whatever changed.

``render`` writes it as markdown, short enough for a pull-request comment; the HTML page is
``harness.report.html.render_comparison``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from harness.checkers import Verdict, percentile
from harness.history import MetricsValue
from harness.report.figures import durations_by_operation
from harness.results import VERDICT_TEXT, RunResult, ScenarioResult, StepResult
from harness.scenario import model as m

SLOWER: Final = 1.25
"""A ratio at or above this is marked ``▲ slower`` (or ``▲ higher`` for a metric)..."""
FASTER: Final = 0.8
"""...and at or below this ``▼ faster`` (``▼ lower``). Only a mark: nothing is judged."""

OPERATIONS: Final = ("connect", "resume", "chat", "history", "context")
STATISTICS: Final = ("p50", "p95", "max")
_ICON = {"passed": "✅", "failed": "❌", "error": "⚠️", "skipped": "⏭️"}


@dataclass(frozen=True)
class Change:
    """A scenario whose status differs between the runs (None: not in that run)."""

    name: str
    file: str
    base: str | None
    new: str | None


@dataclass(frozen=True)
class NewFailure:
    """A scenario that failed or errored in the new run and did not in the base run."""

    scenario: ScenarioResult
    base: str | None
    step: StepResult | None
    verdict: Verdict | None


@dataclass(frozen=True)
class Figure:
    """One figure in both runs: a latency statistic in milliseconds, or a metric's value."""

    scenario: str
    """The scenario's name; empty for the whole run."""
    operation: str
    """The operation (latency) or the metric's name."""
    statistic: str
    """``p50``, ``p95``, ``max`` (latency); ``last``, ``growth`` (metric)."""
    base: float | None
    new: float | None
    base_n: int = 0
    new_n: int = 0

    @property
    def ratio(self) -> float | None:
        if self.base is None or self.new is None or self.base == 0:
            return None
        return self.new / self.base

    @property
    def mark(self) -> str:
        """``▲`` when the new figure is much higher, ``▼`` much lower, else empty."""
        ratio = self.ratio
        if ratio is None:
            return ""
        return "▲" if ratio >= SLOWER else "▼" if ratio <= FASTER else ""


@dataclass
class Comparison:
    base: RunResult
    new: RunResult
    base_name: str
    new_name: str
    changed: list[Change] = field(default_factory=list)
    new_failures: list[NewFailure] = field(default_factory=list)
    latency: list[Figure] = field(default_factory=list)
    metrics: list[Figure] = field(default_factory=list)

    @property
    def seconds_ratio(self) -> float | None:
        return self.new.seconds / self.base.seconds if self.base.seconds else None

    @property
    def fixed(self) -> list[Change]:
        """Scenarios that failed or errored in the base run and passed in the new one."""
        return [c for c in self.changed if c.base in ("failed", "error") and c.new == "passed"]


def _keyed(record: RunResult) -> dict[str, ScenarioResult]:
    names = [s.name for s in record.scenarios]
    return {
        (s.name if names.count(s.name) == 1 else f"{s.name} ({s.file})"): s
        for s in record.scenarios
    }


def compare(
    base: RunResult, new: RunResult, *, base_name: str = "base", new_name: str = "new"
) -> Comparison:
    """What changed from ``base`` to ``new``."""
    out = Comparison(base, new, base_name, new_name)
    before, after = _keyed(base), _keyed(new)
    for key in [*before, *(k for k in after if k not in before)]:
        b, n = before.get(key), after.get(key)
        b_status, n_status = (b.status if b else None), (n.status if n else None)
        if b_status != n_status:
            where = n or b
            assert where is not None
            out.changed.append(Change(key, where.file, b_status, n_status))
        if (
            n is not None
            and n.status in ("failed", "error")
            and b_status not in ("failed", "error")
        ):
            step = n.first_failure
            verdict = next((v for v in step.verdicts if not v.passed), None) if step else None
            out.new_failures.append(NewFailure(n, b_status, step, verdict))
    out.latency = _latency("", base.scenarios, new.scenarios)
    for key in after:
        if key in before:
            out.latency += _latency(key, [before[key]], [after[key]])
            out.metrics += _metrics(key, before[key], after[key])
    return out


def _latency(
    scenario: str, base: Sequence[ScenarioResult], new: Sequence[ScenarioResult]
) -> list[Figure]:
    rows = []
    for op in OPERATIONS:
        b = [d * 1000 for s in base for d in durations_by_operation(s).get(op, [])]
        n = [d * 1000 for s in new for d in durations_by_operation(s).get(op, [])]
        if not b and not n:
            continue
        for stat in STATISTICS:
            rows.append(Figure(scenario, op, stat, _stat(b, stat), _stat(n, stat), len(b), len(n)))
    return rows


def _stat(values: list[float], statistic: str) -> float | None:
    if not values:
        return None
    if statistic == "max":
        return max(values)
    return percentile(values, float(statistic[1:]))


def checked_metrics(result: ScenarioResult) -> list[str]:
    """The names of the metrics a scenario's expectations checked, in order."""
    names: list[str] = []
    if result.scenario is not None:
        for step in m.iter_steps(result.scenario.steps):
            if isinstance(step, m.Expect):
                names += [x.name for x in step.metrics if x.name not in names]
    return names


def readings(result: ScenarioResult, name: str) -> list[float]:
    """Every value of metric ``name`` the scenario read, in order."""
    return [
        op.body.samples[name]
        for op in result.history
        if op.phase == "ok"
        and isinstance(op.body, MetricsValue)
        and op.body.samples
        and name in op.body.samples
    ]


def _metrics(scenario: str, base: ScenarioResult, new: ScenarioResult) -> list[Figure]:
    rows = []
    names = checked_metrics(new) + [
        n for n in checked_metrics(base) if n not in checked_metrics(new)
    ]
    for name in names:
        b, n = _metric_figures(base, name), _metric_figures(new, name)
        for stat in ("last", "growth"):
            rows.append(Figure(scenario, name, stat, b.get(stat), n.get(stat)))
    return rows


def _metric_figures(result: ScenarioResult, name: str) -> dict[str, float]:
    """The metric's last value and growth as its check judged them (the growth between the
    snapshots it names); without such a check, from the first and last readings."""
    out: dict[str, float] = {}
    for step in result.steps:
        for v in step.verdicts:
            if not v.check.startswith("metrics") or name not in v.message:
                continue
            for key, stat in (("value", "last"), ("last", "last"), ("growth", "growth")):
                value = v.evidence.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[stat] = float(value)
    values = readings(result, name)
    if "last" not in out and values:
        out["last"] = values[-1]
    growth = _growth(values)
    if "growth" not in out and growth is not None:
        out["growth"] = growth
    return out


def _growth(values: list[float]) -> float | None:
    if len(values) < 2 or values[0] == 0:
        return None
    return (values[-1] - values[0]) / values[0]


# --- markdown ---------------------------------------------------------------------------------


def _status(status: str | None) -> str:
    return "absent" if status is None else f"{_ICON[status]} {status}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def ratio_text(figure: Figure, up: str = "higher", down: str = "lower") -> str:
    """``1.31x ▲ higher``: the ratio, with its mark and a word that says it without colour."""
    ratio = figure.ratio
    if ratio is None:
        return "—"
    word = {"▲": f" ▲ {up}", "▼": f" ▼ {down}"}.get(figure.mark, "")
    return f"{ratio:.2f}x{word}"


def metric_value(figure: Figure, value: float | None) -> str:
    if value is None:
        return "—"
    if figure.statistic == "growth":
        return f"{value:+.2%}"
    if figure.operation.endswith("_bytes"):
        return f"{value / 2**20:.1f} MiB"
    return f"{value:g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(cmp: Comparison) -> str:
    """The comparison as markdown, for a pull-request comment or a job summary."""
    base, new = cmp.base, cmp.new
    ratio = cmp.seconds_ratio
    lines = [
        "# Session-continuity comparison",
        "",
        f"**Base:** `{cmp.base_name}`: {base.started}, {VERDICT_TEXT[base.verdict]}, "
        f"{_totals(base)}  ",
        f"**New:** `{cmp.new_name}`: {new.started}, {VERDICT_TEXT[new.verdict]}, {_totals(new)}  ",
        f"**Wall time:** {base.seconds:.1f} s → {new.seconds:.1f} s"
        + (f" ({ratio:.2f}x)" if ratio is not None else ""),
        "",
        "## Verdict changes",
        "",
    ]
    if cmp.changed:
        lines += ["| scenario | base | new |", "|---|---|---|"]
        lines += [
            f"| {_cell(c.name)} | {_status(c.base)} | {_status(c.new)} |" for c in cmp.changed
        ]
    else:
        lines.append("None: every scenario has the same verdict in both runs.")
    lines += ["", "## New failures", ""]
    if not cmp.new_failures:
        lines.append("None.")
    for found in cmp.new_failures:
        s = found.scenario
        was = "not in the base run" if found.base is None else f"{found.base} in the base run"
        lines += [f"### {_ICON[s.status]} {s.name}", "", f"- **File:** `{s.file}` ({was})"]
        if found.step is not None:
            lines.append(
                f"- **Step {found.step.path}** (`{found.step.kind}`): {found.step.message}"
            )
            if found.step.expected:
                lines += [
                    f"- **Expected:** {found.step.expected}",
                    f"- **Seen:** {found.step.seen}",
                ]
            if found.verdict is not None and found.verdict.evidence:
                evidence = ", ".join(f"{k}={v}" for k, v in found.verdict.evidence.items())
                lines.append(f"- **Evidence:** {evidence}")
        if s.error:
            lines.append(f"- **Error:** {s.error}")
        lines.append("")
    if cmp.new_failures:
        lines.pop()
    run_rows = [f for f in cmp.latency if not f.scenario]
    if run_rows:
        lines += [
            "",
            "## Latency",
            "",
            "Each cell is base → new (new / base), marked ▲ at "
            f"{SLOWER:g}x or more and ▼ at {FASTER:g}x or less.",
            "",
            *_latency_table(run_rows, with_scenario=False),
        ]
        per = [f for f in cmp.latency if f.scenario]
        if per:
            lines += [
                "",
                "<details><summary>Per scenario</summary>",
                "",
                *_latency_table(per, with_scenario=True),
                "",
                "</details>",
            ]
    if cmp.metrics:
        lines += [
            "",
            "## Checked metrics",
            "",
            "The metrics the scenarios checked: the last value and the growth, as the check judged "
            "them.",
            "",
            "| scenario | metric | figure | base | new | ratio |",
            "|---|---|---|---:|---:|---:|",
        ]
        for f in cmp.metrics:
            lines.append(
                f"| {_cell(f.scenario)} | `{f.operation}` | {f.statistic} | "
                f"{metric_value(f, f.base)} | {metric_value(f, f.new)} | "
                f"{ratio_text(f) if f.statistic == 'last' else '—'} |"
            )
    return "\n".join(lines).rstrip() + "\n"


def _totals(record: RunResult) -> str:
    t = record.totals
    return (
        f"{t['total']} scenarios ({t['passed']} passed, {t['failed']} failed, "
        f"{t['error']} errors, {t['skipped']} skipped)"
    )


def latency_rows(figures: Sequence[Figure]) -> list[tuple[str, str, list[Figure]]]:
    """(scenario, operation, its figures in STATISTICS order), in the order given."""
    grouped: dict[tuple[str, str], list[Figure]] = {}
    for f in figures:
        grouped.setdefault((f.scenario, f.operation), []).append(f)
    return [(scenario, op, figs) for (scenario, op), figs in grouped.items()]


def change_text(f: Figure) -> str:
    """``2.8 → 3.5 ms (1.27x ▲ slower)``."""
    if f.base is None or f.new is None:
        return f"{_ms(f.base)} → {_ms(f.new)}"
    return f"{f.base:.1f} → {f.new:.1f} ms ({ratio_text(f, 'slower', 'faster')})"


def _latency_table(rows: Sequence[Figure], *, with_scenario: bool) -> list[str]:
    first = "| scenario " if with_scenario else ""
    out = [
        f"{first}| operation | count | " + " | ".join(STATISTICS) + " |",
        ("|---" if with_scenario else "") + "|---|---:|" + "---:|" * len(STATISTICS),
    ]
    for scenario, op, figs in latency_rows(rows):
        cells = " | ".join(change_text(f) for f in figs)
        count = f"{figs[0].base_n} → {figs[0].new_n}"
        lead = f"| {_cell(scenario)} " if with_scenario else ""
        out.append(f"{lead}| {op} | {count} | {cells} |")
    return out
