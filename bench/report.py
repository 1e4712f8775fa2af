"""Write a benchmark's figures into docs/performance.md, with the machine and the command.

Each benchmark owns one section between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``;
a new run replaces its section, so the doc always holds the latest measured figures.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from importlib.metadata import version
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def machine() -> str:
    """One line describing where the figures were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, msgspec {version('msgspec')}, "
        f"websockets {version('websockets')}"
    )


def write_section(name: str, body: str, command: str) -> None:
    """Replace (or add) the section ``name`` of docs/performance.md."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = f"Measured {stamp} on {machine()}.\n\nCommand: `{command}`"
    section = f"{begin}\n{header}\n\n{body.strip()}\n{end}"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Performance\n"
    start, stop = text.find(begin), text.find(end)
    if start >= 0 and stop > start:
        text = text[:start] + section + text[stop + len(end) :]
    else:
        text = text.rstrip() + f"\n\n## {name}\n\n{section}\n"
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote section {name!r} of {DOC}", file=sys.stderr)
