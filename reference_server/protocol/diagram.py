"""Draw the state diagrams of docs/protocol.md from the transition tables (h11 style).

python -m reference_server.protocol.diagram docs/protocol.md          # rewrite the block
python -m reference_server.protocol.diagram --check docs/protocol.md  # exit 1 if stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from .transitions import CLIENT_TRANSITIONS, SESSION_TRANSITIONS, ClientState, SessionState

BEGIN = "<!-- BEGIN GENERATED STATE DIAGRAMS: python -m reference_server.protocol.diagram -->"
END = "<!-- END GENERATED STATE DIAGRAMS -->"


def _mermaid(title: str, initial: Enum, table: Mapping[Any, Mapping[Any, Enum]]) -> str:
    lines = [f"**{title}**", "", "```mermaid", "stateDiagram-v2", f"    [*] --> {initial.name}"]
    for state, moves in table.items():
        for event, target in moves.items():
            lines.append(f"    {state.name} --> {target.name}: {event.value}")
        if not moves:
            lines.append(f"    {state.name} --> [*]")
    lines.append("```")
    return "\n".join(lines)


def render() -> str:
    """Return the generated block, markers included."""
    client = _mermaid("Client", ClientState.IDLE, CLIENT_TRANSITIONS)
    session = _mermaid("Server session", SessionState.ATTACHED, SESSION_TRANSITIONS)
    return f"{BEGIN}\n{client}\n\n{session}\n{END}"


def updated(text: str) -> str:
    """Return ``text`` with its generated block replaced by a fresh one."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("the document has no generated-diagram markers")
    return text[:start] + render() + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, verify) the diagrams in a markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = args.path.read_text(encoding="utf-8")
    fresh = updated(text)
    if args.check:
        if fresh != text:
            print(f"{args.path}: state diagrams are out of date; run {__name__}", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
