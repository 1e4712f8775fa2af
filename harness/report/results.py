"""``results.json``: everything a run measured, from which every other report is made.

Its schema is the ``RunRecord`` struct below (docs/reports.md describes each field), versioned
by ``schema_version``. ``harness report results.json --format md|junit`` rebuilds the other
formats from it; ``merge`` combines the files of shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from harness import __version__
from harness.suite import ScenarioResult, SuiteResult

SCHEMA_VERSION = 1


class VerdictRecord(msgspec.Struct, frozen=True, kw_only=True):
    check: str
    passed: bool
    message: str
    evidence: dict[str, Any] = {}


class StepRecord(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    kind: str
    status: str
    message: str = ""
    expected: str = ""
    seen: str = ""
    evidence: dict[str, Any] = {}
    seconds: float = 0.0
    verdicts: list[VerdictRecord] = []


class OpRecord(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One history line: id, client, kind, phase, time (s since the scenario began), data."""

    id: int
    client: str
    kind: str
    phase: str
    time: float
    data: dict[str, Any] = {}


class ScenarioRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    file: str
    status: str
    clock: str | None
    error: str = ""
    seconds: float = 0.0
    virtual_seconds: float = 0.0
    target: str = ""
    tags: list[str] = []
    steps: list[StepRecord] = []
    durations: dict[str, list[float]] = {}
    """Seconds each completed operation took, by kind (connect, resume, chat, history, context)."""
    history: list[OpRecord] = []


class RunRecord(msgspec.Struct, frozen=True, kw_only=True):
    schema_version: int = SCHEMA_VERSION
    tool: str = f"harness {__version__}"
    started: str
    seconds: float
    suite: str = ""
    seed: int | None = None
    shard: str | None = None
    environment: dict[str, str] = {}
    scenarios: list[ScenarioRecord] = []

    @property
    def totals(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for scenario in self.scenarios:
            counts[scenario.status] = counts.get(scenario.status, 0) + 1
        counts["total"] = len(self.scenarios)
        return counts

    @property
    def passed(self) -> bool:
        return all(s.status in ("passed", "skipped") for s in self.scenarios)


OPERATIONS = ("connect", "resume", "chat", "history", "context")


def scenario_record(result: ScenarioResult) -> ScenarioRecord:
    """The JSON form of one scenario's result."""
    history = result.history
    ops = history.ops if history else []
    return ScenarioRecord(
        name=result.name,
        file=result.file,
        status=result.status,
        clock=result.clock,
        error=result.error,
        seconds=round(result.seconds, 6),
        virtual_seconds=result.virtual_seconds,
        target=result.target,
        tags=list(result.tags),
        steps=[
            StepRecord(
                path=s.path,
                kind=s.kind,
                status=s.status,
                message=s.message,
                expected=s.expected,
                seen=s.seen,
                evidence=_plain(s.evidence),
                seconds=round(s.seconds, 6),
                verdicts=[
                    VerdictRecord(
                        check=v.check,
                        passed=v.passed,
                        message=v.message,
                        evidence=_plain(v.evidence),
                    )
                    for v in s.verdicts
                ],
            )
            for s in result.steps
        ],
        durations={kind: [round(d, 6) for d in history.durations(kind)] for kind in OPERATIONS}
        if history
        else {},
        history=[
            OpRecord(
                id=o.id,
                client=o.client,
                kind=o.kind,
                phase=o.phase,
                time=round(o.time, 6),
                data=_plain(o.data),
            )
            for o in ops
        ],
    )


def run_record(
    suite: SuiteResult, *, suite_name: str, seed: int | None, shard: str | None
) -> RunRecord:
    """The JSON form of a whole run."""
    return RunRecord(
        started=suite.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        seconds=round(suite.seconds, 6),
        suite=suite_name,
        seed=seed,
        shard=shard,
        environment=dict(suite.environment),
        scenarios=[scenario_record(r) for r in suite.results],
    )


def write(record: RunRecord, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(record), indent=1) + b"\n")


def read(path: Path) -> RunRecord:
    """Load a results file; a wrong or newer schema is a clear error."""
    try:
        record = msgspec.json.decode(path.read_bytes(), type=RunRecord)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not a harness results file: {exc}") from None
    if record.schema_version != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version {record.schema_version}, expected {SCHEMA_VERSION}"
        )
    return record


def merge(records: list[RunRecord]) -> RunRecord:
    """Combine the results of shards into one run (scenarios in file order)."""
    if not records:
        raise ValueError("nothing to merge")
    scenarios = sorted((s for r in records for s in r.scenarios), key=lambda s: (s.file, s.name))
    first = records[0]
    return RunRecord(
        started=min(r.started for r in records),
        seconds=max(r.seconds for r in records),
        suite=first.suite,
        seed=first.seed,
        shard=None,
        environment=first.environment,
        scenarios=scenarios,
    )


def _plain(value: Any) -> Any:
    """Make evidence JSON-safe (tuples to lists, unknown objects to text)."""
    return msgspec.json.decode(msgspec.json.encode(value, enc_hook=_to_json))


def _to_json(value: Any) -> Any:
    if isinstance(value, float):  # float subclasses such as Duration
        return float(value)
    return str(value)
