"""The one result type: what a run found, as the engine builds it and results.json holds it.

``RunResult`` is written to ``results.json`` as is (docs/reports.md); every report is made from
it, and ``harness check`` judges its histories again. A scenario's result carries the scenario
itself and its whole history, so a saved run can be re-checked without the files it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from harness import __version__
from harness.checkers import Verdict
from harness.history import Op
from harness.scenario import model as m
from harness.scenario.durations import Duration, Threshold

SCHEMA_VERSION: Final = 2

StepStatus = Literal["passed", "failed", "error"]
ScenarioStatus = Literal["passed", "failed", "error", "skipped"]
RunVerdict = Literal["passed", "failed", "error", "nothing_verified"]


class StepResult(msgspec.Struct, kw_only=True):
    """What happened at one step."""

    path: str
    kind: str
    status: StepStatus
    client: str | None = None
    message: str = ""
    expected: str = ""
    seen: str = ""
    evidence: dict[str, Any] = {}
    seconds: float = 0.0
    verdicts: list[Verdict] = []


class ScenarioResult(msgspec.Struct, kw_only=True):
    """The outcome of one scenario, with everything it measured."""

    name: str
    file: str
    status: ScenarioStatus
    clock: Literal["virtual", "real"] | None = None
    error: str = ""
    """Why it errored or was skipped."""
    infrastructure: bool = False
    """The harness's own machinery failed (not the target)."""
    seconds: float = 0.0
    virtual_seconds: float = 0.0
    target: str = ""
    driver: str = ""
    positions: str = "dense"
    """How the driver's positions order (``PositionModel.order``), for re-checking."""
    tags: list[str] = []
    steps: list[StepResult] = []
    scenario: m.Scenario | None = None
    history: list[Op] = []

    @property
    def first_failure(self) -> StepResult | None:
        """The first step that failed or errored: the one every writer reports."""
        return first_failure(self)

    @property
    def checks(self) -> int:
        """How many verdicts the target's behaviour was judged by."""
        return sum(len(s.verdicts) for s in self.steps)


class MatrixSummary(msgspec.Struct, kw_only=True):
    """Set on the clean run of a fault matrix (``harness matrix``), which is written beside the
    matrix's own record: what the matrix found, and the files that hold it."""

    record: str = "matrix.json"
    page: str = "matrix.html"
    faults: int
    killed: int
    scenarios: int
    survivors: list[str] = []

    @property
    def kill_rate(self) -> float:
        return self.killed / self.faults if self.faults else 0.0


class RunResult(msgspec.Struct, kw_only=True):
    """A whole run."""

    schema_version: int = SCHEMA_VERSION
    tool: str = f"harness {__version__}"
    started: str
    seconds: float
    suite: str = ""
    seed: int | None = None
    shard: str | None = None
    allow_skipped: bool = False
    environment: dict[str, str] = {}
    scenarios: list[ScenarioResult] = []
    matrix: MatrixSummary | None = None
    """Set when this run is the clean run of a fault matrix written beside it."""

    @property
    def totals(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for scenario in self.scenarios:
            counts[scenario.status] = counts.get(scenario.status, 0) + 1
        counts["total"] = len(self.scenarios)
        return counts

    @property
    def verdict(self) -> RunVerdict:
        """``passed`` only when something passed and nothing failed: a run in which no
        scenario passed (all skipped, or none selected) verified nothing."""
        totals = self.totals
        if totals["failed"]:
            return "failed"
        if totals["error"]:
            return "error"
        if not totals["passed"]:
            return "nothing_verified"
        return "passed"

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    @property
    def infrastructure_failed(self) -> bool:
        return any(s.infrastructure for s in self.scenarios)


def first_failure(result: ScenarioResult) -> StepResult | None:
    return next((s for s in result.steps if s.status in ("failed", "error")), None)


VERDICT_TEXT: Final[dict[RunVerdict, str]] = {
    "passed": "✅ ALL PASSED",
    "failed": "❌ FAILURES",
    "error": "⚠️ ERRORS",
    "nothing_verified": "⏭️ NOTHING VERIFIED",
}
"""How every writer states a run's verdict."""


def _enc_hook(value: Any) -> Any:
    if isinstance(value, Threshold):
        return str(value)
    if isinstance(value, float):  # float subclasses such as Duration
        return float(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def _dec_hook(tp: type, value: Any) -> Any:
    if tp is Duration or tp is Threshold:
        return m.dec_hook(tp, value)
    raise NotImplementedError(f"no conversion to {tp!r}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode(record: RunResult) -> bytes:
    return msgspec.json.format(_encoder.encode(record), indent=1) + b"\n"


def plain(value: Any) -> Any:
    """``value`` as results.json writes it: JSON's own types (durations in seconds,
    thresholds as written)."""
    return msgspec.json.decode(_encoder.encode(value))


def write(record: RunResult, path: Path) -> None:
    path.write_bytes(encode(record))


def read(path: Path) -> RunResult:
    """Load a results file; a wrong or newer schema is a clear error."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    try:
        head = msgspec.json.decode(raw, type=_Version)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not a harness results file: {exc}") from None
    version = head.schema_version
    if head.kind == "fault_matrix":
        raise ValueError(
            f"{path}: a fault matrix record (matrix.json), not a run's results: "
            "`harness report` renders it, `harness check` needs a run's results.json"
        )
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {version}, this harness reads {SCHEMA_VERSION}")
    try:
        return msgspec.json.decode(raw, type=RunResult, dec_hook=_dec_hook)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not a harness results file: {exc}") from None


class _Version(msgspec.Struct):
    schema_version: int = 0
    kind: str = ""


def merge(records: list[RunResult]) -> RunResult:
    """Combine the results of shards into one run (scenarios in file order)."""
    if not records:
        raise ValueError("nothing to merge")
    scenarios = sorted((s for r in records for s in r.scenarios), key=lambda s: (s.file, s.name))
    first = records[0]
    return RunResult(
        started=min(r.started for r in records),
        seconds=max(r.seconds for r in records),
        suite=first.suite,
        seed=first.seed,
        shard=None,
        allow_skipped=first.allow_skipped,
        environment=_merged_environment(records),
        scenarios=scenarios,
    )


def _merged_environment(records: list[RunResult]) -> dict[str, str]:
    """Every shard's environment: a value all shards that state it agree on is kept as it is;
    values that differ are each named by their shard ("1/2: ...; 2/2: ..."), so no shard's
    note (a worker spread, a load consent) is lost."""
    keys = list(dict.fromkeys(key for r in records for key in r.environment))
    merged: dict[str, str] = {}
    for key in keys:
        stated = [(r.shard, r.environment[key]) for r in records if key in r.environment]
        values = list(dict.fromkeys(value for _, value in stated))
        if len(values) == 1:
            merged[key] = values[0]
        else:
            merged[key] = "; ".join(
                f"{shard or f'record {i}'}: {value}"
                for i, (shard, value) in enumerate(stated, start=1)
            )
    return merged
