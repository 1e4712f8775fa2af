"""The scenario commands of the CLI: run, validate, list, schema, report.

Kept apart from ``cli.py`` (which only registers commands) so each reads as one job:
load and validate, run with a live display, write the reports, pick the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from harness import exit_codes
from harness.report import junit, markdown, results, write_all
from harness.scenario import Scenario, ScenarioError, json_schema, load_files
from harness.suite import SuiteOptions, run_suite

_STYLE = {
    "passed": "green",
    "failed": "red",
    "error": "red",
    "skipped": "yellow",
    "running": "cyan",
}


def _load(paths: list[str], shard: str | None = None) -> list[tuple[Path, Scenario]] | None:
    try:
        loaded = load_files(paths)
    except ScenarioError as error:
        print(str(error), file=sys.stderr)
        return None
    if shard:
        index, count = (int(x) for x in shard.split("/", 1))
        loaded = [item for n, item in enumerate(loaded) if n % count == index - 1]
    return list(loaded)


# --- run ---------------------------------------------------------------------------------


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders")
    parser.add_argument("--target", metavar="URL", help="ws(s)://host/path of another server")
    parser.add_argument(
        "--token-env", metavar="NAME", help="environment variable holding the target's token"
    )
    parser.add_argument(
        "--admin-token-env",
        metavar="NAME",
        help="environment variable holding the target's admin token (enables its virtual clock)",
    )
    parser.add_argument("--report-dir", type=Path, default=Path("reports"))
    parser.add_argument("--clock", choices=["virtual", "real", "auto"], help="override scenarios")
    parser.add_argument("--jobs", type=int, default=1, help="scenarios run at once (default 1)")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    parser.add_argument(
        "--seed",
        type=int,
        help="seeds the clients' backoff jitter; recorded in the report (Toxiproxy ignores seeds)",
    )
    parser.add_argument("--shard", metavar="I/N", help="run the I-th of N slices of the suite")


def run_scenarios(args: argparse.Namespace) -> int:
    """Run scenarios; write results.json, report.md and junit.xml; exit 0, 1, 2 or 3."""
    if args.shard and not _valid_shard(args.shard):
        print(f"harness: --shard must be I/N with 1 <= I <= N, got {args.shard!r}", file=sys.stderr)
        return exit_codes.USAGE_ERROR
    if args.target and not args.target.startswith(("ws://", "wss://")):
        print("harness: --target must be a ws:// or wss:// URL", file=sys.stderr)
        return exit_codes.USAGE_ERROR
    loaded = _load(args.paths, args.shard)
    if loaded is None:
        return exit_codes.USAGE_ERROR
    if not loaded:
        print("harness: no scenario files found", file=sys.stderr)
        return exit_codes.USAGE_ERROR
    options = SuiteOptions(
        target_url=args.target,
        token_env=args.token_env,
        admin_token_env=args.admin_token_env,
        clock=args.clock,
        jobs=args.jobs,
        fail_fast=args.fail_fast,
        seed=args.seed,
    )
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

        suite = asyncio.run(run_suite(loaded, options, progress))
    record = results.run_record(
        suite, suite_name=" ".join(args.paths), seed=args.seed, shard=args.shard
    )
    stamp = suite.started.strftime("%Y%m%dT%H%M%SZ") + (
        f"-shard{args.shard.replace('/', 'of')}" if args.shard else ""
    )
    folder = write_all(record, args.report_dir, stamp)
    totals = record.totals
    print(
        f"\n{totals['passed']} passed, {totals['failed']} failed, {totals['error']} errors, "
        f"{totals['skipped']} skipped in {suite.seconds:.1f} s"
    )
    for scenario in record.scenarios:
        if scenario.status in ("failed", "error"):
            step = next((s for s in scenario.steps if s.status in ("failed", "error")), None)
            where = f"step {step.path} ({step.kind}): {step.message}" if step else scenario.error
            print(f"  {scenario.status.upper()} {scenario.name}: {where}")
    print(f"report: {folder / 'report.md'}")
    if any(s.status == "error" and s.error.startswith("infrastructure") for s in record.scenarios):
        return exit_codes.INFRASTRUCTURE_ERROR
    return exit_codes.OK if record.passed else exit_codes.SCENARIO_FAILED


def _valid_shard(text: str) -> bool:
    try:
        index, count = (int(x) for x in text.split("/", 1))
    except ValueError:
        return False
    return 1 <= index <= count


# --- validate, list, schema ----------------------------------------------------------------


def add_paths_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders")


def validate(args: argparse.Namespace) -> int:
    """Check scenario files without running anything."""
    loaded = _load(args.paths)
    if loaded is None:
        return exit_codes.USAGE_ERROR
    print(f"{len(loaded)} scenario file(s) valid")
    return exit_codes.OK


def list_scenarios(args: argparse.Namespace) -> int:
    """Print each scenario's file, name, tags and step count."""
    loaded = _load(args.paths)
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
    parser.add_argument("inputs", nargs="+", metavar="RESULTS", help="results.json file(s)")
    parser.add_argument("--format", choices=["md", "junit", "json"], default="md")
    parser.add_argument(
        "--merge", action="store_true", help="combine the results of shards into one"
    )
    parser.add_argument("--output", type=Path, help="write here instead of standard output")


def report(args: argparse.Namespace) -> int:
    """Rebuild report.md or junit.xml from results.json; merge shards."""
    try:
        records = [results.read(Path(p)) for p in args.inputs]
    except (OSError, ValueError) as error:
        print(f"harness: {error}", file=sys.stderr)
        return exit_codes.USAGE_ERROR
    if len(records) > 1 and not args.merge:
        print("harness: several results files need --merge", file=sys.stderr)
        return exit_codes.USAGE_ERROR
    record = results.merge(records) if args.merge else records[0]
    if args.format == "md":
        text = markdown.render(record)
    elif args.format == "junit":
        text = junit.render(record)
    else:
        import msgspec

        text = msgspec.json.format(msgspec.json.encode(record), indent=1).decode() + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return exit_codes.OK
