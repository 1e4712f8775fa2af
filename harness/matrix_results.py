"""The fault matrix's record: what ``harness matrix`` found, as ``matrix.json`` holds it.

``MatrixResult`` is to a matrix what ``RunResult`` is to a run: written as is, versioned, and
the only input of ``matrix.md`` and ``matrix.html`` (``harness report matrix.json`` makes them
again). It keeps each cell's verdict and the evidence of its first failure, not the cell's
whole history: the full matrix is over a thousand scenario runs. The clean run (the suite
against the honest server) is a run, written beside it as ``results.json`` with its histories.

The kill rate, the killed count, the survivors and each fault's ``killed_by`` are stored for
readers that do not want to recount, and ``read`` checks that they agree with the cells.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from harness import __version__
from harness.results import (
    MatrixSummary,
    RunResult,
    ScenarioResult,
    ScenarioStatus,
    first_failure,
    plain,
)

if TYPE_CHECKING:
    # Only its type: harness.matrix runs the engine, which imports the report writers.
    from harness.matrix import Matrix

SCHEMA_VERSION: Final = 1
KIND: Final = "fault_matrix"

CellVerdict = Literal["caught", "missed", "error", "skipped"]

VERDICT_OF: Final[dict[str, CellVerdict]] = {
    "failed": "caught",
    "passed": "missed",
    "error": "error",
    "skipped": "skipped",
}
"""A cell's verdict from its scenario's status: only a failure catches the fault (an error is
not evidence)."""


class CellFailure(msgspec.Struct, kw_only=True):
    """The first step that did not hold with the fault planted, and its first failed check."""

    path: str
    kind: str
    status: str
    message: str = ""
    expected: str = ""
    seen: str = ""
    check: str = ""
    """The first failed check's name; empty when the step failed without one (an action)."""
    check_message: str = ""
    evidence: dict[str, Any] = {}
    """The failed check's evidence, then the step's own."""


class Cell(msgspec.Struct, kw_only=True):
    """One scenario with one fault planted."""

    fault: str
    scenario: str
    verdict: CellVerdict
    status: ScenarioStatus
    seconds: float = 0.0
    virtual_seconds: float = 0.0
    steps: int = 0
    checks: int = 0
    """How many verdicts the scenario was judged by: for a missed cell, how many held."""
    failure: CellFailure | None = None
    error: str = ""
    infrastructure: bool = False


class FaultRow(msgspec.Struct, kw_only=True):
    """One planted fault: what it breaks, and which scenarios caught it."""

    name: str
    description: str = ""
    killed_by: list[str] = []


class ScenarioColumn(msgspec.Struct, kw_only=True):
    """One scenario of the matrix (it passed the clean run)."""

    name: str
    file: str
    tags: list[str] = []


class LeftOut(msgspec.Struct, kw_only=True):
    """A scenario of the suite that is not in the matrix, and why."""

    name: str
    file: str = ""
    why: str


class MatrixResult(msgspec.Struct, kw_only=True):
    """A whole fault matrix."""

    schema_version: int = SCHEMA_VERSION
    kind: str = KIND
    tool: str = f"harness {__version__}"
    commit: str = ""
    """The harness's git commit when it ran from a checkout; empty otherwise."""
    dirty: bool = False
    """The checkout had uncommitted changes to tracked files."""
    started: str
    seconds: float
    suite: str = ""
    driver: str = "reference"
    jobs: int = 1
    environment: dict[str, str] = {}
    clean_run: str | None = None
    """The clean run's results file, beside this one (``results.json``), when it was written."""
    kill_rate: float = 0.0
    killed: int = 0
    survivors: list[str] = []
    faults: list[FaultRow] = []
    scenarios: list[ScenarioColumn] = []
    left_out: list[LeftOut] = []
    cells: list[Cell] = []
    """Every (fault, scenario) pair once, faults in catalogue order, then scenarios in order."""

    def cell(self, fault: str, scenario: str) -> Cell:
        """One cell (a lookup over all of them: writers take ``grid()`` once)."""
        return self.grid()[(fault, scenario)]

    def grid(self) -> dict[tuple[str, str], Cell]:
        """Every cell by (fault, scenario)."""
        return {(c.fault, c.scenario): c for c in self.cells}

    def summary(self) -> MatrixSummary:
        """What the clean run's record says of this matrix."""
        return MatrixSummary(
            faults=len(self.faults),
            killed=self.killed,
            scenarios=len(self.scenarios),
            survivors=list(self.survivors),
        )


def _failure(result: ScenarioResult) -> CellFailure | None:
    step = first_failure(result)
    if step is None:
        return None
    failed = next((v for v in step.verdicts if not v.passed), None)
    evidence = {**failed.evidence, **step.evidence} if failed else dict(step.evidence)
    return CellFailure(
        path=step.path,
        kind=step.kind,
        status=step.status,
        message=step.message,
        expected=step.expected,
        seen=step.seen,
        check=failed.check if failed else "",
        check_message=failed.message if failed else "",
        evidence=plain(evidence),
    )


def _cell(fault: str, scenario: str, result: ScenarioResult) -> Cell:
    return Cell(
        fault=fault,
        scenario=scenario,
        verdict=VERDICT_OF[result.status],
        status=result.status,
        seconds=result.seconds,
        virtual_seconds=result.virtual_seconds,
        steps=len(result.steps),
        checks=result.checks,
        failure=_failure(result),
        error=result.error,
        infrastructure=result.infrastructure,
    )


def from_matrix(
    matrix: Matrix,
    *,
    suite: str,
    jobs: int,
    driver: str = "reference",
    describe: Callable[[str], str] = lambda fault: "",
    files: dict[str, str] | None = None,
    commit: tuple[str, bool] | None = None,
    clean_run: str | None = None,
) -> MatrixResult:
    """The record of a matrix ``fault_matrix`` measured. ``files`` names each scenario's file
    (by scenario name); ``commit`` is (commit, dirty), found with ``source_commit`` when not
    given."""
    clean = matrix.clean
    files = dict(files or {})
    if clean is not None:
        files.update({s.name: s.file for s in clean.scenarios})
    tags = {s.name: s.tags for s in clean.scenarios} if clean is not None else {}
    found_commit, dirty = commit if commit is not None else source_commit()
    survivors = matrix.survivors
    return MatrixResult(
        commit=found_commit,
        dirty=dirty,
        started=clean.started if clean is not None else "",
        seconds=round(matrix.seconds, 3),
        suite=suite,
        driver=driver,
        jobs=jobs,
        environment=dict(clean.environment) if clean is not None else {},
        clean_run=clean_run,
        kill_rate=matrix.kill_rate,
        killed=len(matrix.faults) - len(survivors),
        survivors=survivors,
        faults=[
            FaultRow(name=f, description=describe(f), killed_by=matrix.killed_by(f))
            for f in matrix.faults
        ],
        scenarios=[
            ScenarioColumn(name=s, file=files.get(s, ""), tags=list(tags.get(s, [])))
            for s in matrix.scenarios
        ],
        left_out=[
            LeftOut(name=name, file=files.get(name, ""), why=why)
            for name, why in matrix.left_out.items()
        ],
        cells=[_cell(f, s, matrix.cells[(f, s)]) for f in matrix.faults for s in matrix.scenarios],
    )


def source_commit() -> tuple[str, bool]:
    """The git commit of the harness's own source and whether tracked files were changed;
    ("", False) when it does not run from a git checkout."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return "", False
    changed = git("status", "--porcelain", "--untracked-files=no")
    return commit, bool(changed)


# --- the file -------------------------------------------------------------------------------------


_encoder = msgspec.json.Encoder()


def encode(record: MatrixResult) -> bytes:
    return msgspec.json.format(_encoder.encode(record), indent=1) + b"\n"


def write(record: MatrixResult, path: Path) -> None:
    path.write_bytes(encode(record))


class _Head(msgspec.Struct):
    schema_version: int = 0
    kind: str = ""


def is_matrix(path: Path) -> bool:
    """Whether ``path`` says it is a fault matrix record (anything unreadable is not)."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=_Head).kind == KIND
    except (OSError, msgspec.DecodeError):
        return False


def read(path: Path) -> MatrixResult:
    """Load a matrix record; another file, a wrong or newer schema, or figures that disagree
    with the cells are a clear error."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    try:
        head = msgspec.json.decode(raw, type=_Head)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not a fault matrix record: {exc}") from None
    if head.kind != KIND:
        raise ValueError(
            f'{path}: not a fault matrix record (no "kind": "{KIND}"); a run\'s results.json '
            "is read by `harness report` as a run"
        )
    if head.schema_version != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: fault matrix schema_version {head.schema_version}, "
            f"this harness reads {SCHEMA_VERSION}"
        )
    try:
        record = msgspec.json.decode(raw, type=MatrixResult)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not a fault matrix record: {exc}") from None
    problem = inconsistency(record)
    if problem:
        raise ValueError(f"{path}: inconsistent fault matrix record: {problem}")
    return record


def inconsistency(record: MatrixResult) -> str:
    """What in the record disagrees with its cells; empty when nothing does."""
    faults = [f.name for f in record.faults]
    scenarios = [s.name for s in record.scenarios]
    pairs = [(c.fault, c.scenario) for c in record.cells]
    expected = [(f, s) for f in faults for s in scenarios]
    if sorted(pairs) != sorted(expected) or len(set(pairs)) != len(pairs):
        return (
            f"{len(pairs)} cells for {len(faults)} faults x {len(scenarios)} scenarios "
            "(each pair must have exactly one)"
        )
    index = record.grid()
    for fault in record.faults:
        caught = [s for s in scenarios if index[(fault.name, s)].verdict == "caught"]
        if caught != fault.killed_by:
            return f"{fault.name}: killed_by {fault.killed_by}, the cells say {caught}"
    survivors = [f.name for f in record.faults if not f.killed_by]
    if survivors != record.survivors:
        return f"survivors {record.survivors}, the cells say {survivors}"
    killed = len(faults) - len(survivors)
    rate = killed / len(faults) if faults else 0.0
    if killed != record.killed or abs(rate - record.kill_rate) > 1e-9:
        return f"killed {record.killed} ({record.kill_rate}), the cells say {killed} ({rate})"
    return ""


def link_clean_run(clean: RunResult, record: MatrixResult) -> RunResult:
    """The clean run's record, saying which matrix it is the clean run of."""
    return msgspec.structs.replace(clean, matrix=record.summary())
