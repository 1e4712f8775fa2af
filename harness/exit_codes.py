"""Exit codes of the ``harness`` command line, shared by every subcommand."""

from typing import Final

OK: Final = 0
"""Everything that was asked for ran and passed."""

SCENARIO_FAILED: Final = 1
"""The run completed, and at least one scenario failed its checks."""

USAGE_ERROR: Final = 2
"""Invalid input or usage: bad arguments, an invalid scenario file."""

INFRASTRUCTURE_ERROR: Final = 3
"""The harness could not do its job: a tool is missing, a server did not start."""

NOTHING_VERIFIED: Final = 4
"""The run completed, but no scenario passed (all skipped, or none selected): it verified
nothing about the target. ``--allow-skipped`` makes this 0 (the reports still say so)."""

INTERRUPTED: Final = 130
"""Stopped by Ctrl-C (SIGINT), after cleaning up; the shell's convention of 128 + 2."""
