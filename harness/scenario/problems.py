"""What is wrong with a scenario file, and where: ``Problem`` and ``ScenarioError``."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable

__all__ = ["Problem", "ScenarioError", "closest"]


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in a scenario file.

    ``line`` and ``column`` count from 1; both are 0 when the problem is about the file as a whole
    (it cannot be read, a directory holds no scenario). ``field`` is the path of the field in the
    scenario, like ``steps[3].how``, or ``""`` when there is none (a YAML syntax error).
    """

    file: str
    line: int
    column: int
    field: str
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        text = (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )
        if self.suggestion is not None:
            text += f" (did you mean {self.suggestion!r}?)"
        return text


class ScenarioError(Exception):
    """One or more scenario files are not valid; ``problems`` lists every mistake found.

    ``str()`` gives one ``file:line:column: field: message`` line per problem.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice nearest to ``word`` (difflib ratio of at least 0.6), or ``None``."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None
