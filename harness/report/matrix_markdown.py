"""``matrix.md``: the fault matrix as markdown, made from its record (``matrix.json``) alone.

One row per fault, survivors first (they are the suite's blind spots), one column per
scenario, each cell a symbol that reads without colour; then what caught each fault, from the
evidence the record keeps.
"""

from __future__ import annotations

from harness.estimate import format_seconds
from harness.matrix_results import CellVerdict, MatrixResult

SYMBOL: dict[CellVerdict, str] = {"caught": "✗", "missed": "·", "error": "E", "skipped": "-"}
"""How a cell reads: ✗ the scenario failed with the fault planted (caught it)."""

LEGEND = (
    "`✗` the scenario failed with the fault planted (caught), `·` it passed (missed), "
    "`E` it errored (not counted as caught), `-` it was skipped."
)


def ordered(record: MatrixResult) -> list[str]:
    """The faults as the matrix lists them: survivors first, then the others, each group in
    catalogue order."""
    names = [f.name for f in record.faults]
    return [f for f in names if f in record.survivors] + [
        f for f in names if f not in record.survivors
    ]


def headline(record: MatrixResult) -> str:
    """The kill rate in words (both pages start with it)."""
    total = len(record.faults)
    return (
        f"{record.killed} of {total} faults ({record.kill_rate:.0%}) caught by at least one "
        f"scenario; {len(record.scenarios)} scenarios"
    )


def provenance(record: MatrixResult) -> str:
    commit = record.commit[:12] if record.commit else "not from a git checkout"
    if record.commit and record.dirty:
        commit += " with uncommitted changes"
    return commit


def render(record: MatrixResult) -> str:
    """The whole document."""
    columns = [f"s{i}" for i in range(1, len(record.scenarios) + 1)]
    lines = [
        f"# Fault matrix of `{record.suite or 'scenarios'}`",
        "",
        f"**Kill rate:** {headline(record)}.",
        "",
        f"Started {record.started or 'unknown'}, {format_seconds(record.seconds)} with "
        f"`--jobs {record.jobs}`; driver `{record.driver}`; harness commit "
        f"{provenance(record)}; {record.tool}.",
        "",
    ]
    if record.survivors:
        by_name = {f.name: f for f in record.faults}
        lines += ["## Not caught by any scenario", ""]
        for name in record.survivors:
            description = by_name[name].description
            lines.append(f"- `{name}`" + (f": {description}" if description else ""))
        lines.append("")
    elif record.faults:
        lines += ["Every fault was caught by at least one scenario.", ""]
    lines += [
        "## The matrix",
        "",
        LEGEND,
        "",
        "| fault | " + " | ".join(columns) + " | caught by |",
        "|---|" + "---|" * len(columns) + "---:|",
    ]
    grid = record.grid()
    for fault in ordered(record):
        cells = [SYMBOL[grid[(fault, s.name)].verdict] for s in record.scenarios]
        caught = len(next(f for f in record.faults if f.name == fault).killed_by)
        lines.append(f"| `{fault}` | " + " | ".join(cells) + f" | {caught} |")
    lines += ["", "| column | scenario | file | faults caught |", "|---|---|---|---:|"]
    for column, scenario in zip(columns, record.scenarios, strict=True):
        caught = sum(scenario.name in f.killed_by for f in record.faults)
        lines.append(f"| {column} | {scenario.name} | `{scenario.file}` | {caught} |")
    if record.left_out:
        lines += ["", "**Left out of the matrix:**", ""]
        lines += [f"- {item.name}: {item.why}" for item in record.left_out]
    lines += _evidence(record, columns)
    if record.clean_run:
        lines += [
            "",
            f"The clean run (the suite against the honest server) is `{record.clean_run}` "
            "beside this file, with its report.",
        ]
    return "\n".join(lines) + "\n"


def _evidence(record: MatrixResult, columns: list[str]) -> list[str]:
    """For each fault, how each scenario that caught it (or errored) failed."""
    column = {s.name: c for c, s in zip(columns, record.scenarios, strict=True)}
    lines = ["", "## What caught each fault", ""]
    grid = record.grid()
    for fault in ordered(record):
        cells = [grid[(fault, s.name)] for s in record.scenarios]
        shown = [c for c in cells if c.verdict in ("caught", "error")]
        if not shown:
            lines.append(f"- `{fault}`: nothing (every scenario passed with it planted)")
            continue
        lines.append(f"- `{fault}`:")
        for cell in shown:
            where = f"{column[cell.scenario]} {cell.scenario}"
            if cell.verdict == "error":
                lines.append(f"  - {where}: ERROR, not counted: {cell.error or 'no reason given'}")
                continue
            failure = cell.failure
            if failure is None:
                lines.append(f"  - {where}: failed, no step recorded: {cell.error}")
                continue
            check = f"the {failure.check} check" if failure.check else "an action"
            seen = failure.seen or failure.check_message or failure.message
            lines.append(f"  - {where}: {check} at step {failure.path} ({failure.kind}): {seen}")
    return lines
