"""The scenario commands of the CLI: run, validate, list, schema, report.

Kept apart from ``cli.py`` (which only registers commands) so each reads as one job:
load and validate, run with a live display, write the reports, pick the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from harness import baseline, exit_codes, results
from harness.driver import registry
from harness.engine import LOAD_LIMIT, Engine, RunOptions
from harness.estimate import format_seconds
from harness.report import compare, html, junit, markdown, write_all
from harness.results import RunResult
from harness.scenario import Scenario, ScenarioError, json_schema, load_files, parse_duration
from harness.targets.base import TargetError
from harness.targets.external import Credentials, parse_credential
from harness.workers import DEFAULT_THRESHOLD

_STYLE = {
    "passed": "green",
    "failed": "red",
    "error": "red",
    "skipped": "yellow",
    "running": "cyan",
}


def _load(
    paths: list[str],
    shard: str | None = None,
    *,
    tags: Sequence[str] = (),
    names: Sequence[str] = (),
) -> list[tuple[Path, Scenario]] | None:
    """Load and validate every file; keep those selected by tag or name; then the shard."""
    try:
        loaded = load_files(paths)
    except ScenarioError as error:
        print(str(error), file=sys.stderr)
        return None
    loaded = [(p, s) for p, s in loaded if selected(s, tags=tags, names=names)]
    if shard:
        index, count = (int(x) for x in shard.split("/", 1))
        loaded = [item for n, item in enumerate(loaded) if n % count == index - 1]
    return list(loaded)


def selected(scenario: Scenario, *, tags: Sequence[str], names: Sequence[str]) -> bool:
    """With tags, the scenario has one of them; with names, its name matches one pattern."""
    if tags and not set(tags) & set(scenario.tags):
        return False
    return not names or any(fnmatch.fnmatchcase(scenario.name, n) for n in names)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# --- run ---------------------------------------------------------------------------------


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """Which scenarios: paths, then --tag and --name to narrow them."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders")
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        help="only scenarios with this tag (repeatable: any of them)",
    )
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only scenarios whose name matches this shell pattern, e.g. '*resume*' "
        "(repeatable: any of them)",
    )


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Against what, how, and with what safety limits (run and plan share them)."""
    parser.add_argument("--target", metavar="URL", help="ws(s)://host/path of another server")
    parser.add_argument(
        "--token-env", metavar="NAME", help="environment variable holding the target's token"
    )
    parser.add_argument(
        "--credential",
        action="append",
        default=[],
        metavar="USER=SOURCE",
        help="where one simulated user's credential comes from: USER=env:VARIABLE or "
        "USER=cmd:COMMAND (prints a fresh token; {user} is replaced); * for every other user. "
        "Never the token itself",
    )
    parser.add_argument(
        "--admin-token-env",
        metavar="NAME",
        help="environment variable holding the target's admin token (enables its virtual clock)",
    )
    parser.add_argument(
        "--driver",
        default="reference",
        help="the driver that speaks the target's protocol (default: reference; "
        "plugins register more in the ws_continuity.drivers entry-point group)",
    )
    parser.add_argument("--clock", choices=["virtual", "real", "auto"], help="override scenarios")
    parser.add_argument(
        "--allow-load",
        type=int,
        metavar="N",
        help="against an external target, consent to scenarios of up to N connections at once "
        f"(without it: {LOAD_LIMIT}); the report records the consent",
    )
    parser.add_argument(
        "--max-wall",
        type=_duration,
        metavar="DURATION",
        help="real time the run may spend waiting, e.g. 20m; a scenario beyond it is skipped "
        "with its estimate (without it, a scenario that would fall back to real time because "
        "the target has no clock control runs only if it waits for nothing)",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    add_target_arguments(parser)
    parser.add_argument("--report-dir", type=Path, default=Path("reports"))
    parser.add_argument("--jobs", type=int, default=1, help="scenarios run at once (default 1)")
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes a large `parallel` group is spread over, one event loop each "
        "(default: the cores this process may use; 1: every group in one process)",
    )
    parser.add_argument(
        "--spread-from",
        type=int,
        default=DEFAULT_THRESHOLD,
        metavar="N",
        help=f"spread only groups of at least N clients (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    parser.add_argument(
        "--seed",
        type=int,
        help="seeds the clients' backoff jitter; recorded in the report (Toxiproxy ignores seeds)",
    )
    parser.add_argument("--shard", metavar="I/N", help="run the I-th of N slices of the suite")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="RESULTS",
        help="a saved results.json: a scenario whose median connect, resume, chat, history or "
        "context time is more than --tolerance above that run's fails",
    )
    parser.add_argument(
        "--tolerance",
        type=_ratio,
        default=0.5,
        metavar="RATIO",
        help="how much slower than the baseline is still fine: 0.5 or 50%% (default 50%%); a "
        "regression must also exceed 5 ms",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        metavar="N",
        help="run the embedded reference server as N nodes sharing one Redis, each behind its "
        "own proxy; every resume goes to the next node (docs/cluster.md)",
    )
    parser.add_argument(
        "--allow-skipped",
        action="store_true",
        help="exit 0 when no scenario ran (the reports still say nothing was verified)",
    )


def _usage(message: str) -> int:
    print(f"harness: {message}", file=sys.stderr)
    return exit_codes.USAGE_ERROR


def _options(args: argparse.Namespace, *, jobs: int = 1) -> RunOptions | str:
    """The run options of the target arguments, or what is wrong with them."""
    if args.target and not args.target.startswith(("ws://", "wss://")):
        return "--target must be a ws:// or wss:// URL"
    try:
        registry.load(args.driver)
    except registry.DriverNotFoundError as error:
        return str(error)
    credentials: dict[str, str] = {}
    for text in args.credential:
        try:
            user, source = parse_credential(text)
        except ValueError as error:
            return str(error)
        credentials[user] = source
    if (credentials or args.allow_load is not None) and not args.target:
        return "--credential and --allow-load are for an external target (--target URL)"
    nodes = getattr(args, "nodes", None)
    if nodes is not None and (args.target or not 1 <= nodes <= 8):
        return "--nodes is for the embedded reference server, from 1 to 8"
    if args.target:
        try:
            Credentials(credentials, args.token_env).check()
        except TargetError as error:
            return str(error)
    return RunOptions(
        target_url=args.target,
        token_env=args.token_env,
        admin_token_env=args.admin_token_env,
        driver=args.driver,
        clock=args.clock,
        jobs=jobs,
        allow_load=args.allow_load,
        max_wall=args.max_wall,
        credentials=credentials or None,
        workers=getattr(args, "workers", None),
        spread_threshold=getattr(args, "spread_from", DEFAULT_THRESHOLD),
        nodes=nodes,
    )


def run_scenarios(args: argparse.Namespace) -> int:
    """Run scenarios; write results.json, report.md and junit.xml; exit 0, 1, 2, 3 or 4."""
    if args.shard and not _valid_shard(args.shard):
        return _usage(f"--shard must be I/N with 1 <= I <= N, got {args.shard!r}")
    if args.workers is not None and args.workers < 1:
        return _usage(f"--workers must be 1 or more, got {args.workers}")
    if args.spread_from < 1:
        return _usage(f"--spread-from must be 1 or more, got {args.spread_from}")
    options = _options(args, jobs=args.jobs)
    if isinstance(options, str):
        return _usage(options)
    loaded = _load(args.paths, args.shard, tags=args.tag, names=args.name)
    if loaded is None:
        return exit_codes.USAGE_ERROR
    if not loaded and not (args.tag or args.name):
        return _usage("no scenario files found")
    if args.baseline is not None:
        try:
            options.baseline = baseline.load(args.baseline, tolerance=args.tolerance, floor=0.005)
        except ValueError as error:
            return _usage(f"--baseline: {error}")
    options.fail_fast = args.fail_fast
    options.seed = args.seed
    options.allow_skipped = args.allow_skipped
    console = Console(stderr=True)
    statuses = {scenario.name: "queued" for _, scenario in loaded}

    def table() -> Table:
        view = Table(title="scenarios", expand=False)
        view.add_column("scenario")
        view.add_column("status")
        for name, status in statuses.items():
            style = _STYLE.get(status.split(" ", 1)[0], "white")
            view.add_row(name, f"[{style}]{status}[/]")
        return view

    with Live(table(), console=console, refresh_per_second=8, transient=False) as live:

        def progress(name: str, status: str) -> None:
            statuses[name] = status
            live.update(table())
            if not console.is_terminal and not status.startswith("running step"):
                console.print(f"{status:8} {name}")

        record = asyncio.run(_run(loaded, options, " ".join(args.paths), args.shard, progress))
    stamp = record.started.replace("-", "").replace(":", "") + (
        f"-shard{args.shard.replace('/', 'of')}" if args.shard else ""
    )
    folder = write_all(record, args.report_dir, stamp)
    print_summary(record)
    print(f"report: {folder / 'report.md'}")
    return exit_code(record)


async def _run(
    loaded: list[tuple[Path, Scenario]],
    options: RunOptions,
    suite: str,
    shard: str | None,
    progress: Callable[[str, str], None],
) -> RunResult:
    async with Engine(options) as engine:
        return await engine.run(loaded, suite=suite, shard=shard, progress=progress)


def print_summary(record: RunResult) -> None:
    """The run's totals, its verdict, and where each failure and skip happened."""
    totals = record.totals
    print(
        f"\n{totals['passed']} passed, {totals['failed']} failed, {totals['error']} errors, "
        f"{totals['skipped']} skipped in {record.seconds:.1f} s: "
        f"{results.VERDICT_TEXT[record.verdict]}"
    )
    for scenario in record.scenarios:
        if scenario.status in ("failed", "error"):
            step = scenario.first_failure
            where = f"step {step.path} ({step.kind}): {step.message}" if step else scenario.error
            print(f"  {scenario.status.upper()} {scenario.name}: {where}")
        elif scenario.status == "skipped":
            print(f"  SKIPPED {scenario.name}: {scenario.error}")


def exit_code(record: RunResult) -> int:
    """0 passed; 1 a scenario failed; 3 the harness's machinery failed; 4 nothing verified."""
    if record.infrastructure_failed:
        return exit_codes.INFRASTRUCTURE_ERROR
    verdict = record.verdict
    if verdict == "nothing_verified":
        return exit_codes.OK if record.allow_skipped else exit_codes.NOTHING_VERIFIED
    return exit_codes.OK if verdict == "passed" else exit_codes.SCENARIO_FAILED


def _ratio(text: str) -> float:
    """``0.5`` or ``50%``, as a ratio."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a ratio: {text!r} (write 0.5 or 50%)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a tolerance is not negative: {text!r}")
    return value


def _valid_shard(text: str) -> bool:
    try:
        index, count = (int(x) for x in text.split("/", 1))
    except ValueError:
        return False
    return 1 <= index <= count


# --- validate, list, schema ----------------------------------------------------------------


def add_paths_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders")


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)


def validate(args: argparse.Namespace) -> int:
    """Check scenario files without running anything."""
    loaded = _load(args.paths)
    if loaded is None:
        return exit_codes.USAGE_ERROR
    print(f"{len(loaded)} scenario file(s) valid")
    return exit_codes.OK


def list_scenarios(args: argparse.Namespace) -> int:
    """Print each scenario's file, name, tags and step count."""
    loaded = _load(args.paths, tags=args.tag, names=args.name)
    if loaded is None:
        return exit_codes.USAGE_ERROR
    for path, scenario in loaded:
        tags = ", ".join(scenario.tags) or "-"
        steps = len(scenario.steps)
        print(f"{path}\t{scenario.name}\t[{tags}]\t{steps} steps")
    return exit_codes.OK


def schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of scenario files, for editors."""
    print(json.dumps(json_schema(), indent=2))
    return exit_codes.OK


# --- report --------------------------------------------------------------------------------


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="RESULTS",
        help="results.json file(s), or one fault matrix record (matrix.json: md, html or json)",
    )
    parser.add_argument("--format", choices=["md", "junit", "json", "html"], default="md")
    parser.add_argument(
        "--merge", action="store_true", help="combine the results of shards into one"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="BASE.json NEW.json: what changed from one run to the other (md or html)",
    )
    parser.add_argument("--output", type=Path, help="write here instead of standard output")


def report(args: argparse.Namespace) -> int:
    """Rebuild report.md, junit.xml or report.html from results.json; merge shards; compare
    two runs; rebuild matrix.md or matrix.html from matrix.json."""
    from harness import matrix_results

    if any(matrix_results.is_matrix(Path(p)) for p in args.inputs):
        return _report_matrix(args)
    try:
        records = [results.read(Path(p)) for p in args.inputs]
    except ValueError as error:
        print(f"harness: {error}", file=sys.stderr)
        return exit_codes.USAGE_ERROR
    if args.compare:
        if len(records) != 2 or args.merge or args.format not in ("md", "html"):
            print(
                "harness: --compare takes two results files, BASE and NEW, and --format md or html",
                file=sys.stderr,
            )
            return exit_codes.USAGE_ERROR
        found = compare.compare(*records, base_name=args.inputs[0], new_name=args.inputs[1])
        text = compare.render(found) if args.format == "md" else html.render_comparison(found)
    elif len(records) > 1 and not args.merge:
        print("harness: several results files need --merge", file=sys.stderr)
        return exit_codes.USAGE_ERROR
    else:
        text = _render(results.merge(records) if args.merge else records[0], args.format)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return exit_codes.OK


def _report_matrix(args: argparse.Namespace) -> int:
    """``harness report matrix.json``: its markdown, its page or the record itself."""
    from harness import matrix_results
    from harness.report import matrix_markdown

    if len(args.inputs) != 1 or args.merge or args.compare or args.format == "junit":
        return _usage(
            "a fault matrix record is reported alone, with --format md, html or json "
            "(no --merge, --compare or junit)"
        )
    try:
        record = matrix_results.read(Path(args.inputs[0]))
    except ValueError as error:
        print(f"harness: {error}", file=sys.stderr)
        return exit_codes.USAGE_ERROR
    if args.format == "md":
        text = matrix_markdown.render(record)
    elif args.format == "html":
        text = html.render_matrix(record)
    else:
        text = matrix_results.encode(record).decode()
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return exit_codes.OK


def _render(record: RunResult, form: str) -> str:
    if form == "md":
        return markdown.render(record)
    if form == "junit":
        return junit.render(record)
    if form == "html":
        return html.render(record)
    return results.encode(record).decode()


# --- check ---------------------------------------------------------------------------------


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="RESULTS", help="results.json file(s)")


def check(args: argparse.Namespace) -> int:
    """Judge every saved history again; exit 1 if any verdict differs from the stored one."""
    from harness import recheck

    differences = 0
    for name in args.inputs:
        try:
            record = results.read(Path(name))
        except ValueError as error:
            print(f"harness: {error}", file=sys.stderr)
            return exit_codes.USAGE_ERROR
        found = recheck.recheck(record)
        judged = sum(f.steps for f in found)
        changed = [d for f in found for d in f.differences]
        differences += len(changed)
        for line in changed:
            print(f"{name}: {line}")
        print(f"{name}: {judged} steps judged again from the history, {len(changed)} differ")
    return exit_codes.OK if not differences else exit_codes.SCENARIO_FAILED


# --- matrix --------------------------------------------------------------------------------


def add_matrix_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders")
    parser.add_argument(
        "--fault",
        action="append",
        metavar="NAME",
        help="plant only this fault (repeatable; default: the whole catalogue)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="scenarios run at once (default 2)")
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="write matrix.json, matrix.md, matrix.html and the clean run's reports to "
        "DIR/<timestamp>-matrix/ and DIR/latest-matrix/ (default: reports)",
    )
    parser.add_argument("--output", type=Path, help="write the markdown matrix here as well")
    parser.add_argument(
        "--evidence",
        type=Path,
        metavar="PATH",
        help="write, as JSON, the step, check and evidence of every kill",
    )


def matrix(args: argparse.Namespace) -> int:
    """Run the suite against every planted fault; write its record and pages; print the
    matrix; exit 1 if one survived."""
    from harness import matrix_results
    from harness.matrix import Matrix, evidence, fault_matrix
    from harness.report import matrix_markdown, write_matrix

    loaded = _load(args.paths)
    if loaded is None:
        return exit_codes.USAGE_ERROR
    catalogue = registry.planted_faults("reference")
    faults = args.fault or list(catalogue)
    unknown = [f for f in faults if f not in catalogue]
    if unknown:
        print(
            f"harness: no planted fault {unknown[0]!r}; the catalogue: {', '.join(catalogue)}",
            file=sys.stderr,
        )
        return exit_codes.USAGE_ERROR

    def progress(name: str, status: str) -> None:
        print(f"{name}: {status}", file=sys.stderr)

    suite = " ".join(args.paths)

    async def go() -> Matrix:
        async with Engine(RunOptions(jobs=args.jobs)) as engine:
            return await fault_matrix(engine, loaded, faults, progress, suite=suite)

    found = asyncio.run(go())
    record = matrix_results.from_matrix(
        found,
        suite=suite,
        jobs=args.jobs,
        describe=lambda fault: registry.describe_fault("reference", fault),
        files={scenario.name: str(path) for path, scenario in loaded},
        clean_run="results.json" if found.clean is not None else None,
    )
    stamp = record.started.replace("-", "").replace(":", "")
    folder = write_matrix(record, found.clean, args.report_dir, stamp)
    text = matrix_markdown.render(record)
    sys.stdout.write(text)
    print(f"matrix: {folder / 'matrix.html'}", file=sys.stderr)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    if args.evidence:
        args.evidence.write_text(json.dumps(evidence(found), indent=2) + "\n", encoding="utf-8")
    survivors = found.survivors
    return exit_codes.OK if not survivors else exit_codes.SCENARIO_FAILED


# --- plan ----------------------------------------------------------------------------------


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    add_target_arguments(parser)


def plan_scenarios(args: argparse.Namespace) -> int:
    """Say what a run would do, scenario by scenario, without opening a socket."""
    options = _options(args)
    if isinstance(options, str):
        return _usage(options)
    loaded = _load(args.paths, tags=args.tag, names=args.name)
    if loaded is None:
        return exit_codes.USAGE_ERROR
    engine = Engine(options)
    engine.probe = False
    decided = asyncio.run(engine.plans(loaded))
    total = 0.0
    print(f"{'will':<14}{'clock':<9}{'real waits':>12}{'conns':>7}{'msgs':>6}  scenario")
    for (_, scenario), one in zip(loaded, decided, strict=True):
        consent = any(r.startswith("needs consent") for r in one.refused)
        will = "run" if one.runnable else ("needs consent" if consent else "skip")
        if one.runnable:
            total += one.estimate.real_seconds
        cost = one.estimate
        print(
            f"{will:<14}{one.clock or '-':<9}{format_seconds(cost.real_seconds):>12}"
            f"{cost.connections:>7}{cost.messages:>6}  {scenario.name}"
        )
        if one.reason:
            print(f"{'':<14}why: {one.reason}")
    runs = sum(one.runnable for one in decided)
    print(
        f"{runs} of {len(decided)} scenarios would run, waiting {format_seconds(total)} in real "
        "time (plus the time their steps take)"
    )
    if options.target_url:
        print(
            "the target's /metrics was not asked for (plan opens no socket): scenarios that "
            "check metrics are planned as if it served none"
        )
    return exit_codes.OK


# --- stability -----------------------------------------------------------------------------


def add_stability_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser)
    add_target_arguments(parser)
    parser.add_argument(
        "--runs", type=_positive, default=20, help="how many runs in a row (default 20)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="scenarios run at once (default 1)")
    parser.add_argument(
        "--seed",
        type=int,
        help="run i seeds the clients' backoff jitter with SEED+i-1 (default: each run random)",
    )
    parser.add_argument("--output", type=Path, help="write the markdown table here as well")
    parser.add_argument(
        "--report-dir",
        type=Path,
        help="write each run's reports to REPORT_DIR/run-N/ (default: none are written)",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def stability(args: argparse.Namespace) -> int:
    """Run the suite N times; print each scenario's verdict counts; exit 1 unless every
    scenario passed in every run."""
    from harness.stability import Stability, render, repeat_suite

    options = _options(args, jobs=args.jobs)
    if isinstance(options, str):
        return _usage(options)
    loaded = _load(args.paths, tags=args.tag, names=args.name)
    if loaded is None:
        return exit_codes.USAGE_ERROR
    if not loaded:
        return _usage("no scenario files found")
    suite = " ".join(args.paths)

    def progress(run: int, record: RunResult) -> None:
        totals = record.totals
        print(
            f"run {run}/{args.runs}: {totals['passed']} passed, {totals['failed']} failed, "
            f"{totals['error']} errors, {totals['skipped']} skipped in {record.seconds:.1f} s",
            file=sys.stderr,
        )
        if args.report_dir is not None:
            write_all(record, args.report_dir, f"run-{run}")

    async def go() -> Stability:
        async with Engine(options) as engine:
            return await repeat_suite(
                engine, loaded, args.runs, suite=suite, seed=args.seed, progress=progress
            )

    found = asyncio.run(go())
    text = render(found, suite=suite)
    sys.stdout.write(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    if found.infrastructure_failed:
        return exit_codes.INFRASTRUCTURE_ERROR
    return exit_codes.OK if found.green else exit_codes.SCENARIO_FAILED
