"""``report.html``: the report people look at, one self-contained file made from results.json.

Built only from a ``RunResult``, like ``report.md``: the same verdict, summary and hints, and
in addition a timeline per client (``harness.report.timeline``), latency distributions and
their change from one operation to the next, and the server metrics that scenarios checked.
The page is a Jinja2 template (``templates/``); the charts are drawn in the browser by
Chart.js, whose file is inlined with the page's own script and style, so the page loads
nothing from anywhere (its Content-Security-Policy forbids it). Without JavaScript every figure
is still there, as the tables under each chart.

``render_comparison`` makes the page of ``harness report --compare`` (``harness.report.compare``);
``render_matrix`` the page of a fault matrix (``matrix.html``, from ``matrix.json`` alone).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from harness.checkers import Verdict, percentile
from harness.estimate import format_seconds
from harness.history import MetricsValue, SnapshotTaken
from harness.matrix_results import Cell, FaultRow, MatrixResult, ScenarioColumn
from harness.report import compare, markdown, matrix_markdown, timeline
from harness.report.compare import Comparison, checked_metrics
from harness.report.figures import durations_by_operation
from harness.results import VERDICT_TEXT, RunResult, ScenarioResult, StepResult

CHART_JS = "chart.umd.min.js"
"""The vendored Chart.js build (``vendor/``; see vendor/README.md for its version and hash)."""

MAX_TIMELINES = 6
"""Clients drawn per scenario; the others are named, and their histories are in results.json."""

MAX_STEP_ROWS = 200
"""Past this many steps (a ``parallel`` step of many clients), the steps table shows every step
that did not pass and the first passed ones, and counts the other passed ones by kind."""

OPERATIONS = ("connect", "resume", "chat", "history", "context")

STATUS_TEXT = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR", "skipped": "SKIPPED"}
ICON = {"passed": "✅", "failed": "❌", "error": "⚠️", "skipped": "⏭️"}
VERDICT_EXPLAINED = {
    "passed": "Every scenario that ran passed; none failed or errored.",
    "failed": "At least one scenario failed: the target did not do what a scenario expected.",
    "error": "At least one scenario errored (a timeout, the harness's own machinery, or a bug) "
    "and none failed.",
    "nothing_verified": "No scenario passed, so this run says nothing about the target.",
}

# Okabe and Ito's palette, which colour-blind readers tell apart; every series also has its own
# point shape or line dash, so the charts read in grey too.
BLUE, ORANGE, GREEN, VERMILION, PURPLE, SKY, YELLOW, BLACK, GREY = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#767676",
)

# Within a chart no two series look alike in grey: each has its own shape, rotation or fill.
MARK_STYLE: dict[str, dict[str, Any]] = {
    "delivered": {"label": "delivered", "pointStyle": "circle", "radius": 3, "color": BLUE},
    "duplicate": {"label": "duplicate", "pointStyle": "crossRot", "radius": 8, "color": VERMILION},
    "reordered": {"label": "reordered", "pointStyle": "triangle", "radius": 7, "color": ORANGE},
    "lost": {
        "label": "lost (never arrived)",
        "pointStyle": "rectRot",
        "radius": 7,
        "color": VERMILION,
        "hollow": True,
    },
    "declared_lost": {
        "label": "declared lost by the target",
        "pointStyle": "dash",
        "radius": 7,
        "color": GREY,
    },
}
EVENT_STYLE: dict[str, dict[str, Any]] = {
    "new": {"label": "new session", "pointStyle": "rect", "color": GREEN},
    "full": {"label": "resumed in full", "pointStyle": "circle", "color": GREEN, "hollow": True},
    "degraded": {
        "label": "resumed degraded",
        "pointStyle": "triangle",
        "color": ORANGE,
        "hollow": True,
    },
    "rejected": {"label": "resume rejected", "pointStyle": "rectRot", "color": VERMILION},
    "failed": {"label": "attempt or reply failed", "pointStyle": "cross", "color": VERMILION},
    "drop": {"label": "drop", "pointStyle": "line", "rotation": 90, "color": BLACK},
    "closed": {"label": "closed", "pointStyle": "line", "rotation": 45, "color": GREY},
    "notice": {"label": "notice", "pointStyle": "rectRounded", "color": SKY, "hollow": True},
    "fault": {"label": "fault layer", "pointStyle": "triangle", "rotation": 180, "color": PURPLE},
    "clock": {
        "label": "clock jump or wait",
        "pointStyle": "triangle",
        "rotation": 90,
        "color": BLUE,
    },
    "restart": {"label": "target restart", "pointStyle": "rect", "color": BLACK, "hollow": True},
    "check_failed": {"label": "check failed", "pointStyle": "star", "color": VERMILION},
    "other": {"label": "other", "pointStyle": "line", "color": GREY},
}
OPERATION_STYLE: dict[str, dict[str, Any]] = {
    "connect": {"pointStyle": "circle", "borderDash": [], "color": BLUE},
    "resume": {"pointStyle": "triangle", "borderDash": [6, 3], "color": VERMILION},
    "chat": {"pointStyle": "rect", "borderDash": [2, 2], "color": GREEN},
    "history": {"pointStyle": "star", "borderDash": [8, 2, 2, 2], "color": PURPLE},
    "context": {"pointStyle": "crossRot", "borderDash": [1, 4], "color": ORANGE},
}
LANE_TEXT = {"session": "session", "network": "network", "clock": "clock", "checks": "checks"}


# --- what the template is given ----------------------------------------------------------------


@dataclass
class Chart:
    """One chart: a canvas the page's script draws from ``config`` (Chart.js options)."""

    id: str
    title: str
    label: str
    """The canvas's accessible name: what the chart shows, in words."""
    config: dict[str, Any]
    height: int = 260


@dataclass
class EventRow:
    t: float
    wall: float
    lane: str
    text: str
    flag: str = ""
    """A word that stands out without colour: DUPLICATE, LOST, REORDERED, CHECK FAILED, ..."""
    step: str = ""


@dataclass
class TimelineView:
    client: str
    chart: Chart
    rows: list[EventRow]
    counts: dict[str, int]
    axis_note: str


@dataclass
class FigureRow:
    """Statistics of one operation's durations, in milliseconds."""

    operation: str
    count: int
    p50: float
    p95: float
    p99: float
    max: float


@dataclass
class MetricView:
    name: str
    chart: Chart | None
    readings: list[tuple[float, float, str]]
    """(scenario time, value, what the reading was: a snapshot's name or empty)."""
    checks: list[tuple[str, Verdict]]
    """(step path, verdict) of every check of this metric."""
    bytes: bool


@dataclass
class StepView:
    step: StepResult
    failed: bool
    first_failed: Verdict | None
    evidence: list[tuple[str, str]]


@dataclass
class ScenarioView:
    anchor: str
    result: ScenarioResult
    icon: str
    status_text: str
    description: str
    steps: list[StepView]
    shown_steps: list[StepView]
    folded_steps: list[tuple[str, int]]
    """(kind, how many) of the passed steps the table leaves out."""
    failure: StepView | None
    hint: str
    timelines: list[TimelineView]
    clients_not_drawn: list[str]
    latency: list[FigureRow]
    latency_chart: Chart | None
    metrics: list[MetricView]

    @property
    def failed(self) -> bool:
        return self.result.status in ("failed", "error")


@dataclass
class Page:
    """Everything the report template shows."""

    record: RunResult
    title: str
    verdict: str
    verdict_text: str
    verdict_explained: str
    totals: dict[str, int]
    virtual_seconds: float
    summary: list[tuple[str, str]]
    scenarios: list[ScenarioView]
    performance: list[FigureRow]
    distribution: Chart | None
    environment: list[tuple[str, str]]
    recommendations: list[tuple[str, str]]
    charts: list[Chart] = field(default_factory=list)


@dataclass
class MatrixCellView:
    cell: Cell
    symbol: str
    word: str
    label: str
    """The cell's accessible name: fault, scenario, verdict and the failed check."""
    anchor: str
    """The id of its evidence on the page (caught and errored cells have one)."""
    column: str
    evidence: list[tuple[str, str]]


@dataclass
class MatrixRowView:
    fault: FaultRow
    anchor: str
    survived: bool
    cells: list[MatrixCellView]

    @property
    def shown(self) -> list[MatrixCellView]:
        """The cells with evidence to show: caught and errored."""
        return [c for c in self.cells if c.cell.verdict in ("caught", "error")]

    @property
    def missed(self) -> list[MatrixCellView]:
        return [c for c in self.cells if c.cell.verdict in ("missed", "skipped")]


@dataclass
class MatrixPage:
    """Everything the matrix template shows."""

    record: MatrixResult
    verdict: str
    verdict_text: str
    verdict_explained: str
    headline: str
    provenance: str
    wall: str
    rows: list[MatrixRowView]
    columns: list[tuple[str, ScenarioColumn, int]]
    """(column label, scenario, how many faults it caught)."""
    survivors: list[MatrixRowView]
    environment: list[tuple[str, str]]


CELL_WORD = {"caught": "caught", "missed": "missed", "error": "ERROR", "skipped": "skipped"}


# --- rendering ------------------------------------------------------------------------------------


def render(record: RunResult) -> str:
    """The whole page, for one run."""
    page = build(record)
    template = _environment().get_template("report.html.j2")
    return template.render(page=page, **_assets(page.charts, record.tool))


def render_comparison(comparison: Comparison) -> str:
    """The page of ``harness report --compare``."""
    chart = _comparison_chart(comparison)
    return (
        _environment()
        .get_template("compare.html.j2")
        .render(
            cmp=comparison,
            latency_chart=chart,
            verdict_text=VERDICT_TEXT,
            ratio_text=compare.ratio_text,
            change_text=compare.change_text,
            latency_rows=compare.latency_rows,
            statistics=compare.STATISTICS,
            metric_value=compare.metric_value,
            slower=f"{compare.SLOWER:g}",
            faster=f"{compare.FASTER:g}",
            **_assets([chart] if chart else [], comparison.new.tool),
        )
    )


def render_matrix(record: MatrixResult) -> str:
    """The page of a fault matrix (``matrix.html``), from its record alone."""
    page = build_matrix(record)
    assets = _assets([], record.tool)
    # No chart on this page: Chart.js is left out (a third of a run's page).
    assets["library"] = Markup("")
    return _environment().get_template("matrix.html.j2").render(page=page, **assets)


def _anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def build_matrix(record: MatrixResult) -> MatrixPage:
    """The matrix page's content, from the record alone."""
    columns = [
        (str(n), scenario, sum(scenario.name in f.killed_by for f in record.faults))
        for n, scenario in enumerate(record.scenarios, 1)
    ]
    label_of = {scenario.name: label for label, scenario, _ in columns}
    by_name = {f.name: f for f in record.faults}
    rows = []
    grid = record.grid()
    for name in matrix_markdown.ordered(record):
        fault = by_name[name]
        anchor = f"fault-{_anchor(name)}"
        cells = []
        for scenario in record.scenarios:
            cell = grid[(name, scenario.name)]
            column = label_of[scenario.name]
            what = CELL_WORD[cell.verdict]
            if cell.verdict == "caught" and cell.failure is not None:
                check = cell.failure.check or "an action"
                what += f" by the {check} check at step {cell.failure.path}"
            elif cell.verdict == "error":
                what += ", not counted as caught"
            cells.append(
                MatrixCellView(
                    cell=cell,
                    symbol=matrix_markdown.SYMBOL[cell.verdict],
                    word=CELL_WORD[cell.verdict],
                    label=f"{name} in scenario {column}, {scenario.name}: {what}",
                    anchor=f"{anchor}-s{column}",
                    column=column,
                    evidence=[
                        (k, _evidence_text(v))
                        for k, v in (cell.failure.evidence if cell.failure else {}).items()
                    ],
                )
            )
        rows.append(MatrixRowView(fault, anchor, not fault.killed_by, cells))
    survivors = [r for r in rows if r.survived]
    if not record.faults or not record.scenarios:
        verdict = "nothing_verified"
        verdict_text = "⏭️ NOTHING MEASURED"
        explained = (
            "No fault was planted."
            if not record.faults
            else "No scenario passed the clean run, so no fault could be caught: this matrix "
            "says nothing about the suite."
        )
    elif survivors:
        verdict = "failed"
        verdict_text = f"❌ {len(survivors)} OF {len(record.faults)} FAULTS SURVIVED"
        explained = (
            "No scenario failed with these faults planted: they are the suite's blind spots, "
            "listed first."
        )
    else:
        verdict = "passed"
        verdict_text = f"✅ ALL {len(record.faults)} FAULTS CAUGHT"
        explained = "Every planted fault made at least one scenario fail."
    environment = list(record.environment.items())
    for key, value in (("jobs", str(record.jobs)), ("driver", record.driver)):
        if key not in record.environment:
            environment.append((key, value))
    environment.append(("tool", record.tool))
    return MatrixPage(
        record=record,
        verdict=verdict,
        verdict_text=verdict_text,
        verdict_explained=explained,
        headline=matrix_markdown.headline(record),
        provenance=matrix_markdown.provenance(record),
        wall=format_seconds(record.seconds),
        rows=rows,
        columns=columns,
        survivors=survivors,
        environment=environment,
    )


def build(record: RunResult) -> Page:
    """The page's content, from the record alone."""
    totals = record.totals
    scenarios = [_scenario(n, s) for n, s in enumerate(record.scenarios, 1)]
    performance = _figures(
        {
            op: [d for s in record.scenarios for d in durations_by_operation(s).get(op, [])]
            for op in OPERATIONS
        }
    )
    distribution = _distribution(record)
    verdict_text = VERDICT_TEXT[record.verdict]
    explained = VERDICT_EXPLAINED[record.verdict]
    if record.verdict == "nothing_verified":
        explained += f" {totals['skipped']} skipped" + (
            "; exit 0 allowed by --allow-skipped." if record.allow_skipped else "."
        )
    environment = list(record.environment.items())
    environment.append(("seed", str(record.seed) if record.seed is not None else "none given"))
    environment.append(("clock", ", ".join(sorted({s.clock or "none" for s in record.scenarios}))))
    environment.append(("tool", record.tool))
    charts = [c for v in scenarios for c in _charts_of(v)]
    if distribution is not None:
        charts.append(distribution)
    return Page(
        record=record,
        title=f"Session-continuity report: {record.suite or 'scenarios'}",
        verdict=record.verdict,
        verdict_text=verdict_text,
        verdict_explained=explained,
        totals=totals,
        virtual_seconds=sum(s.virtual_seconds for s in record.scenarios),
        # The same lines as report.md's, taken from its writer, so both say the same.
        summary=_markdown_items(markdown._summary(record)),
        scenarios=scenarios,
        performance=performance,
        distribution=distribution,
        environment=environment,
        recommendations=_markdown_items(markdown._recommendations(record.scenarios)[2:]),
        charts=charts,
    )


def _charts_of(view: ScenarioView) -> list[Chart]:
    charts = [t.chart for t in view.timelines]
    if view.latency_chart is not None:
        charts.append(view.latency_chart)
    charts += [mv.chart for mv in view.metrics if mv.chart is not None]
    return charts


_ITEM = re.compile(r"^- \*\*(?P<label>.+?)\*\*(?P<text>.*)$")


def _markdown_items(lines: Sequence[str]) -> list[tuple[str, str]]:
    """``- **Label:** text`` lines of report.md as (label, text), so both reports say the same
    (the text keeps no markdown but backticks, shown as they are)."""
    out: list[tuple[str, str]] = []
    for line in lines:
        found = _ITEM.match(line)
        if found:
            label, text = found["label"], found["text"].replace("**", "")
            if label.endswith(":"):
                label, text = label[:-1], text.lstrip()
            out.append((label, text))
        elif line.startswith("- "):
            out.append(("", line[2:].replace("**", "")))
    return out


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["ms"] = lambda v: "—" if v is None or math.isnan(v) else f"{v:.1f} ms"
    env.filters["ratio"] = lambda v: "—" if v is None else f"{v:.2f}x"
    env.filters["number"] = _number
    return env


def _number(value: float, as_bytes: bool = False) -> str:
    if as_bytes:
        return f"{value / 2**20:.1f} MiB ({value:.0f} B)"
    return f"{value:g}"


def _asset(name: str) -> str:
    return (resources.files("harness.report") / name).read_text(encoding="utf-8")


def _assets(charts: Sequence[Chart], tool: str) -> dict[str, Any]:
    """The page's inlined style, scripts and chart data, safe inside their elements."""
    library = _asset(f"vendor/{CHART_JS}")
    # The build's last line points at a source map the page does not ship.
    library = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", library)
    data = {c.id: c.config for c in charts}
    return {
        "generator": tool,
        "style": Markup(_asset("templates/report.css")),
        "library": Markup(_script_safe(library)),
        "script": Markup(_script_safe(_asset("templates/report.js"))),
        "chart_data": Markup(_json_for_script(data)),
    }


def _script_safe(text: str) -> str:
    return text.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def _json_for_script(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --- one scenario ---------------------------------------------------------------------------------


def _scenario(n: int, result: ScenarioResult) -> ScenarioView:
    anchor = f"s{n}"
    steps = [_step(s) for s in result.steps]
    failure = next((s for s in steps if s.failed), None)
    check = failure.first_failed.check if failure and failure.first_failed else ""
    hint = markdown._HINTS.get(check.removesuffix(" (must fail)"), "")
    drawn = timeline.clients(result)
    failing = [s.step.client for s in steps if s.failed and s.step.client]
    drawn = sorted(drawn, key=lambda c: c not in failing)  # clients a failed step names first
    views = [_timeline_view(anchor, i, result, c) for i, c in enumerate(drawn[:MAX_TIMELINES], 1)]
    figures = durations_by_operation(result)
    latency = _figures({op: figures.get(op, []) for op in OPERATIONS})
    shown, folded = _fold_steps(steps)
    return ScenarioView(
        anchor=anchor,
        result=result,
        icon=ICON[result.status],
        status_text=STATUS_TEXT[result.status],
        description=(result.scenario.description.strip() if result.scenario else ""),
        steps=steps,
        shown_steps=shown,
        folded_steps=folded,
        failure=failure,
        hint=hint,
        timelines=views,
        clients_not_drawn=drawn[MAX_TIMELINES:],
        latency=latency,
        latency_chart=_latency_chart(anchor, result.name, figures),
        metrics=_metrics(anchor, result),
    )


def _fold_steps(steps: list[StepView]) -> tuple[list[StepView], list[tuple[str, int]]]:
    if len(steps) <= MAX_STEP_ROWS:
        return steps, []
    keep = MAX_STEP_ROWS // 2
    shown = [s for n, s in enumerate(steps) if s.failed or n < keep]
    folded: dict[str, int] = {}
    for n, s in enumerate(steps):
        if not s.failed and n >= keep:
            folded[s.step.kind] = folded.get(s.step.kind, 0) + 1
    return shown, list(folded.items())


def _step(step: StepResult) -> StepView:
    failed = step.status in ("failed", "error")
    first = next((v for v in step.verdicts if not v.passed), None)
    evidence = dict(step.evidence)
    if first is not None:
        evidence = {**first.evidence, **evidence}
    return StepView(
        step=step,
        failed=failed,
        first_failed=first,
        evidence=[(k, _evidence_text(v)) for k, v in evidence.items()],
    )


def _evidence_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _figures(values: dict[str, list[float]]) -> list[FigureRow]:
    rows = []
    for operation, seconds in values.items():
        if seconds:
            ms = [s * 1000 for s in seconds]
            rows.append(
                FigureRow(
                    operation,
                    len(ms),
                    percentile(ms, 50),
                    percentile(ms, 95),
                    percentile(ms, 99),
                    max(ms),
                )
            )
    return rows


# --- charts ---------------------------------------------------------------------------------------


def _timeline_view(anchor: str, index: int, result: ScenarioResult, client: str) -> TimelineView:
    tl = timeline.timeline(result, client)
    virtual = result.clock == "virtual" and result.virtual_seconds > 0
    x_title = (
        "seconds since the scenario began, on the target's clock (wall time plus virtual jumps)"
        if virtual
        else "seconds since the scenario began (wall time)"
    )
    y_title = "arrival order (opaque positions)" if tl.axis == "arrival" else "stream position"
    datasets: list[dict[str, Any]] = []
    for mark_kind in timeline.MARK_KINDS:
        points = [
            _point(mk.t, mk.wall, mk.y, _mark_label(mk)) for mk in tl.marks if mk.kind == mark_kind
        ]
        if points:
            datasets.append(_dataset(MARK_STYLE[mark_kind], points, axis="y", kind=mark_kind))
    lanes = [lane for lane in timeline.LANES if any(e.lane == lane for e in tl.events)]
    for kind, style in EVENT_STYLE.items():
        points = [
            _point(e.t, e.wall, LANE_TEXT[e.lane], e.text) for e in tl.events if e.kind == kind
        ]
        if points:
            datasets.append(_dataset(style, points, axis="lanes", kind=kind))
    bands = [
        {
            "t": [_r(o.start), _r(o.end if o.end is not None else tl.end)],
            "w": [_r(o.start_wall), _r(o.end_wall if o.end_wall is not None else tl.end_wall)],
            "why": o.why,
        }
        for o in tl.offline
    ]
    counts: dict[str, int] = {kind: tl.count(kind) for kind in timeline.MARK_KINDS}
    found = ", ".join(
        f"{n} {MARK_STYLE[k]['label']}" for k, n in counts.items() if n and k != "delivered"
    )
    label = (
        f"Timeline of {client} in {result.name}: {counts['delivered']} deliveries in order"
        + (f", {found}" if found else ", nothing lost, doubled or reordered")
        + f"; {len(tl.events)} events; {len(tl.offline)} periods without a connection."
    )
    config = {
        "kind": "timeline",
        "type": "scatter",
        "data": {"datasets": datasets},
        "options": {
            "scales": {
                "x": {"type": "linear", "title": {"display": True, "text": x_title}, "min": 0},
                "y": {
                    "type": "linear",
                    "title": {"display": True, "text": y_title},
                    "stack": "timeline",
                    "stackWeight": 4,
                    "ticks": {"precision": 0},
                    "offset": True,
                },
                "lanes": {
                    "type": "category",
                    "labels": [LANE_TEXT[lane] for lane in lanes] or ["session"],
                    "stack": "timeline",
                    "stackWeight": max(1, len(lanes)) * 0.6,
                    "offset": True,
                    "position": "left",
                },
            },
            "plugins": {"offline": {"bands": bands}},
        },
    }
    chart = Chart(
        id=f"{anchor}-timeline-{index}",
        title=f"Timeline of {client}",
        label=label,
        config=config,
        height=300 + 22 * len(lanes),
    )
    note = (
        "Time runs on the target's clock: the virtual clock's jumps are drawn at their length."
        if virtual
        else "Time is wall time."
    )
    return TimelineView(client, chart, _rows(tl), counts, note)


MARK_TEXT = {
    "delivered": ("", "delivered"),
    "duplicate": ("DUPLICATE", "delivered again"),
    "reordered": ("REORDERED", "arrived after a later position"),
    "lost": ("LOST", "never arrived, and the target did not declare it lost"),
    "declared_lost": ("DECLARED LOST", "the target said it was lost"),
}
"""Each mark's flag (a word that stands out without colour) and what it means."""


def _mark_label(mk: timeline.Mark, *, flag: bool = True) -> str:
    word, what = MARK_TEXT[mk.kind]
    by = f"; named by the check of step {mk.found_by}" if mk.found_by else ""
    prefix = f"{word}: " if flag and word else ""
    return f"{prefix}position {mk.position} {what}{by}"


def _point(t: float, wall: float, y: float | str, label: str) -> dict[str, Any]:
    return {"x": _r(t), "t": _r(t), "w": _r(wall), "y": y, "label": label}


def _r(value: float) -> float:
    return round(value, 4)


def _dataset(
    style: dict[str, Any], points: list[dict[str, Any]], *, axis: str, kind: str
) -> dict[str, Any]:
    return {
        "label": style["label"],
        "kind": kind,
        "data": points,
        "yAxisID": axis,
        "pointStyle": style["pointStyle"],
        "pointRadius": style.get("radius", 6),
        "pointHoverRadius": style.get("radius", 6) + 2,
        "pointRotation": style.get("rotation", 0),
        "borderColor": style["color"],
        "backgroundColor": "rgba(0,0,0,0)" if style.get("hollow") else style["color"] + "b3",
        "borderWidth": 2,
    }


def _rows(tl: timeline.ClientTimeline) -> list[EventRow]:
    """The timeline as text: events, and deliveries with runs of plain ones merged."""
    items: list[tuple[float, int, EventRow]] = []
    for e in tl.events:
        flag = "CHECK FAILED" if e.kind == "check_failed" else ""
        if e.text.startswith("protocol violation"):
            flag = "VIOLATION"
        items.append((e.t, 0, EventRow(e.t, e.wall, LANE_TEXT[e.lane], e.text, flag, e.step or "")))
    run: list[timeline.Mark] = []

    def flush() -> None:
        if not run:
            return
        first, last = run[0], run[-1]
        span = (
            f"position {first.position}"
            if len(run) == 1
            else f"positions {first.position} to {last.position} ({len(run)} messages)"
        )
        items.append((first.t, 1, EventRow(first.t, first.wall, "delivery", f"delivered {span}")))
        run.clear()

    event_times = sorted(e.t for e in tl.events)
    for mk in sorted(tl.marks, key=lambda mk: mk.t):
        if mk.kind == "delivered":
            if run and (
                run[-1].stream != mk.stream
                or not _follows(run[-1].position, mk.position)
                or any(run[-1].t < t <= mk.t for t in event_times)
            ):
                flush()
            run.append(mk)
            continue
        flush()
        flag, _ = MARK_TEXT[mk.kind]
        row = EventRow(mk.t, mk.wall, "delivery", _mark_label(mk, flag=False), flag)
        items.append((mk.t, 1, row))
    flush()
    items.sort(key=lambda item: (item[0], item[1]))
    return [row for _, _, row in items]


def _follows(a: object, b: object) -> bool:
    return isinstance(a, int) and isinstance(b, int) and b == a + 1


def _latency_chart(anchor: str, name: str, figures: dict[str, list[float]]) -> Chart | None:
    """Each operation's duration, the first to the last: how latency moved across cycles."""
    series = {op: figures[op] for op in OPERATIONS if len(figures.get(op, [])) > 1}
    if not series:
        return None
    longest = max(len(v) for v in series.values())
    datasets = []
    for op, seconds in series.items():
        style = OPERATION_STYLE[op]
        datasets.append(
            {
                "label": op,
                "data": [round(s * 1000, 3) for s in seconds],
                "pointStyle": style["pointStyle"],
                "pointRadius": 4,
                "borderDash": style["borderDash"],
                "borderColor": style["color"],
                "backgroundColor": style["color"],
                "borderWidth": 2,
                "tension": 0,
            }
        )
    described = "; ".join(
        f"{op}: {len(v)} measured, first {v[0] * 1000:.1f} ms, last {v[-1] * 1000:.1f} ms"
        for op, v in series.items()
    )
    return Chart(
        id=f"{anchor}-latency",
        title="Latency, operation by operation",
        label=f"Latency of each operation of {name} in the order they ran. {described}.",
        config={
            "kind": "latency",
            "type": "line",
            "data": {"labels": list(range(1, longest + 1)), "datasets": datasets},
            "options": {
                "scales": {
                    "x": {"title": {"display": True, "text": "n-th operation of its kind"}},
                    "y": {
                        "beginAtZero": True,
                        "title": {"display": True, "text": "milliseconds"},
                    },
                },
            },
        },
        height=240,
    )


def _distribution(record: RunResult) -> Chart | None:
    """The run's connect and resume latency distributions (and the other operations')."""
    values = {
        op: sorted(
            d * 1000 for s in record.scenarios for d in durations_by_operation(s).get(op, [])
        )
        for op in OPERATIONS
    }
    values = {op: v for op, v in values.items() if v}
    if not values:
        return None
    datasets = []
    for op, ms in values.items():
        style = OPERATION_STYLE[op]
        n = len(ms)
        datasets.append(
            {
                "label": f"{op} ({n})",
                "data": [
                    {"x": round(max(v, 0.001), 3), "y": round((i + 1) / n, 4)}
                    for i, v in enumerate(ms)
                ],
                "showLine": True,
                "stepped": "before",
                "pointStyle": style["pointStyle"],
                "pointRadius": 3,
                "borderDash": style["borderDash"],
                "borderColor": style["color"],
                "backgroundColor": style["color"],
                "borderWidth": 2,
            }
        )
    described = "; ".join(
        f"{op}: {len(v)} measured, median {percentile(v, 50):.1f} ms, slowest {max(v):.1f} ms"
        for op, v in values.items()
    )
    return Chart(
        id="run-distribution",
        title="Latency distributions",
        label=f"Share of operations at most as slow as each duration, per operation. {described}.",
        config={
            "kind": "distribution",
            "type": "scatter",
            "data": {"datasets": datasets},
            "options": {
                "scales": {
                    "x": {
                        "type": "logarithmic",
                        "title": {"display": True, "text": "milliseconds (log scale)"},
                    },
                    "y": {
                        "min": 0,
                        "max": 1,
                        "title": {"display": True, "text": "share at most this slow"},
                    },
                },
            },
        },
        height=300,
    )


def _metrics(anchor: str, result: ScenarioResult) -> list[MetricView]:
    """Each metric a step of the scenario checked: its readings and its checks."""
    names = checked_metrics(result)
    if not names:
        return []
    clock = timeline.scenario_clock(result.history)
    snapshots = {
        op.body.metrics_op: op.body.name
        for op in result.history
        if isinstance(op.body, SnapshotTaken) and op.body.metrics_op is not None
    }
    out = []
    for i, name in enumerate(names, 1):
        readings: list[tuple[float, float, str]] = []
        points = []
        for op in result.history:
            body = op.body
            if op.phase != "ok" or not isinstance(body, MetricsValue) or not body.samples:
                continue
            if name in body.samples:
                value = body.samples[name]
                what = f"snapshot {snapshots[op.id]}" if op.id in snapshots else ""
                readings.append((clock[op.index], value, what))
                label = f"{name} = {value:g}" + (f" ({what})" if what else "")
                points.append(_point(clock[op.index], op.time, value, label))
        checks = [
            (step.path, v)
            for step in result.steps
            for v in step.verdicts
            if v.check.startswith("metrics") and name in v.message
        ]
        as_bytes = name.endswith("_bytes")
        chart = None
        if points:
            chart = Chart(
                id=f"{anchor}-metric-{i}",
                title=name,
                label=f"{name} at each of its {len(points)} readings in {result.name}.",
                config={
                    "kind": "metric",
                    "type": "scatter",
                    "data": {
                        "datasets": [
                            {
                                "label": name,
                                "data": points,
                                "showLine": True,
                                "pointStyle": "rect",
                                "pointRadius": 5,
                                "borderColor": BLUE,
                                "backgroundColor": BLUE,
                                "borderWidth": 2,
                            }
                        ]
                    },
                    "options": {
                        "format": "bytes" if as_bytes else "number",
                        "scales": {
                            "x": {
                                "type": "linear",
                                "title": {
                                    "display": True,
                                    "text": "seconds since the scenario began",
                                },
                            },
                            "y": {"title": {"display": True, "text": "MiB" if as_bytes else name}},
                        },
                    },
                },
                height=220,
            )
        out.append(MetricView(name, chart, readings, checks, as_bytes))
    return out


def _comparison_chart(cmp: Comparison) -> Chart | None:
    rows = [
        row
        for row in cmp.latency
        if row.scenario == "" and row.base is not None and row.new is not None
    ]
    if not rows:
        return None
    labels = [f"{row.operation} {row.statistic}" for row in rows]
    return Chart(
        id="compare-latency",
        title="Latency, base against new",
        label="Latency statistics of the whole run, base and new: "
        + "; ".join(
            f"{row.operation} {row.statistic} {row.base:.1f} ms to {row.new:.1f} ms"
            for row in rows
            if row.base is not None and row.new is not None
        ),
        config={
            "kind": "compare",
            "type": "bar",
            "data": {
                "labels": labels,
                "datasets": [
                    {
                        "label": "base",
                        "data": [round(row.base or 0, 3) for row in rows],
                        "backgroundColor": SKY,
                        "borderColor": BLACK,
                        "borderWidth": 1,
                    },
                    {
                        "label": "new (hatched)",
                        "pattern": "hatch",
                        "data": [round(row.new or 0, 3) for row in rows],
                        "backgroundColor": VERMILION,
                        "borderColor": BLACK,
                        "borderWidth": 1,
                    },
                ],
            },
            "options": {
                "scales": {
                    "y": {"beginAtZero": True, "title": {"display": True, "text": "milliseconds"}}
                }
            },
        },
        height=280,
    )
