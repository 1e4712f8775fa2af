"""Run benchmarks: ``python -m bench [--quick] [--write] [NAME...]``.

Each benchmark measures its baseline in the same run. ``--write`` puts the figures, the
machine and the command into docs/performance.md; ``--quick`` is the short CI mode.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

from . import codec, overhead, peer, profile, resume, sessions, storm, throughput, virtual_time
from .report import write_section

BENCHMARKS: dict[str, Callable[[bool], str]] = {
    "codec": lambda quick: codec.run(quick)[1],
    "throughput": lambda quick: throughput.run(quick)[1],
    "resume": lambda quick: resume.run(quick)[1],
    "virtual_time": lambda quick: virtual_time.run(quick)[1],
    "storm": lambda quick: storm.run(quick)[1],
    "sessions": lambda quick: sessions.run(quick)[1],
    "overhead": lambda quick: overhead.run(quick)[1],
    "peer": lambda quick: peer.run(quick)[1],
    "profile": lambda quick: profile.run(quick)[1],
}


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (all by default) and print their tables."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="short run, for CI")
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    for name in args.names or list(BENCHMARKS):
        table = BENCHMARKS[name](args.quick)
        print(f"## {name}\n\n{table}\n")
        if args.write:
            write_section(name, table, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
