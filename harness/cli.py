"""The ``harness`` command line.

Each subcommand is a ``Command``: a name, a help line, a function that adds its arguments and a
function that runs it and returns an exit code from ``harness.exit_codes``. They are all
registered in ``COMMANDS`` below; that is the one place to add a new one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import __version__, exit_codes
from harness.errors import HarnessInfrastructureError
from harness.faults.toxiproxy_server import (
    ENV_URL,
    TOXIPROXY_VERSION,
    ToxiproxyServer,
    find_toxiproxy_server,
)


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands that take no arguments."""


@dataclass(frozen=True)
class Command:
    """One subcommand of ``harness``."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments


# -- doctor ---------------------------------------------------------------------------------


def _doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for Toxiproxy to answer GET /version (default: %(default)s)",
    )


async def _doctor(startup_timeout: float) -> int:
    if os.environ.get(ENV_URL):
        print(f"{ENV_URL} is set: using the Toxiproxy server at {os.environ[ENV_URL]}")
        async with ToxiproxyServer(startup_timeout=startup_timeout) as server:
            print(f"toxiproxy version: {server.version}")
            print(f"toxiproxy url: {server.url}")
        return exit_codes.OK

    binary = find_toxiproxy_server()
    print(f"toxiproxy-server: {binary}")
    async with ToxiproxyServer(binary=binary, startup_timeout=startup_timeout) as server:
        print(f"toxiproxy version: {server.version}")
        print(f"toxiproxy url: {server.url} (pid {server.pid})")
        if server.version != TOXIPROXY_VERSION:
            print(
                f"note: the pinned version is {TOXIPROXY_VERSION}; this one is untested",
                file=sys.stderr,
            )
    print("toxiproxy stopped: ok")
    return exit_codes.OK


def run_doctor(args: argparse.Namespace) -> int:
    """Check that the fault layer can run: find Toxiproxy, start it, ask its version."""
    return asyncio.run(_doctor(args.startup_timeout))


# -- selfcheck ------------------------------------------------------------------------------


def _selfcheck_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where to write the report (default: %(default)s)",
    )


def run_selfcheck(args: argparse.Namespace) -> int:
    """Drive the reference server through a real Toxiproxy end to end and write a report."""
    from harness.selfcheck import selfcheck

    return asyncio.run(selfcheck(args.report_dir))


# -- registry -------------------------------------------------------------------------------


def _scenario_commands() -> tuple[Command, ...]:
    from harness import commands

    return (
        Command(
            "run",
            "run scenarios and write report.md, junit.xml, report.html and results.json",
            commands.run_scenarios,
            commands.add_run_arguments,
        ),
        Command(
            "validate",
            "check scenario files without running them",
            commands.validate,
            commands.add_paths_argument,
        ),
        Command(
            "list",
            "list scenarios: file, name, tags, steps",
            commands.list_scenarios,
            commands.add_list_arguments,
        ),
        Command("schema", "print the JSON Schema of scenario files (for editors)", commands.schema),
        Command(
            "plan",
            "say what a run would do, scenario by scenario (run, skip and why, clock, real waits, "
            "connections, messages), without opening a socket",
            commands.plan_scenarios,
            commands.add_plan_arguments,
        ),
        Command(
            "matrix",
            "run a suite against every planted fault of the reference server; print which "
            "scenario caught which fault, and the kill rate",
            commands.matrix,
            commands.add_matrix_arguments,
        ),
        Command(
            "stability",
            "run a suite N times in a row (default 20); print each scenario's verdicts and "
            "the flaky ones with the runs that differed",
            commands.stability,
            commands.add_stability_arguments,
        ),
        Command(
            "check",
            "judge the histories in results.json again and report any verdict that differs",
            commands.check,
            commands.add_check_arguments,
        ),
        Command(
            "report",
            "rebuild report.md, junit.xml or report.html from results.json; merge; compare",
            commands.report,
            commands.add_report_arguments,
        ),
    )


COMMANDS: tuple[Command, ...] = (
    Command(
        name="doctor",
        help="find and start Toxiproxy, print its path, version and URL",
        run=run_doctor,
        add_arguments=_doctor_arguments,
    ),
    Command(
        name="selfcheck",
        help="run the reference server behind a real Toxiproxy through drops, a crash and the "
        "three windows; write a report",
        run=run_selfcheck,
        add_arguments=_selfcheck_arguments,
    ),
    *_scenario_commands(),
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Resilience test harness for WebSocket session continuity.",
        epilog=(
            f"exit codes: {exit_codes.OK} ok, {exit_codes.SCENARIO_FAILED} a scenario failed, "
            f"{exit_codes.USAGE_ERROR} invalid input or usage, "
            f"{exit_codes.INFRASTRUCTURE_ERROR} infrastructure error, "
            f"{exit_codes.NOTHING_VERIFIED} nothing verified (no scenario passed)"
        ),
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``harness`` command line and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits 0 for --help/--version and 2 for usage errors.
        code = exit_.code
        if code is None:
            return exit_codes.OK
        return code if isinstance(code, int) else exit_codes.USAGE_ERROR
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return exit_codes.USAGE_ERROR
    try:
        return run(args)
    except HarnessInfrastructureError as error:
        print(f"harness: {error}", file=sys.stderr)
        return exit_codes.INFRASTRUCTURE_ERROR
    except KeyboardInterrupt:
        # asyncio.run has cancelled the run by now: every proxy and server was stopped on the
        # way out (tests/e2e/test_interrupt.py checks it). No report is written for a cut run.
        print("harness: interrupted; proxies and servers were stopped", file=sys.stderr)
        return exit_codes.INTERRUPTED
