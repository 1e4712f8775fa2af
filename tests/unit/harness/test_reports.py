"""The report writers against golden files, results.json reading and merging, `harness report`.

The golden files in tests/golden/ are what the writers make of the hand-built run below. After
an intended change to a writer, regenerate them with ``UPDATE_GOLDEN=1 pytest
tests/unit/harness/test_reports.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import msgspec
import pytest

from harness import exit_codes, results
from harness.checkers import Verdict
from harness.cli import main
from harness.history import (
    AdvanceClock,
    AwaitReply,
    Body,
    Connect,
    Delivered,
    Disconnect,
    Done,
    Failure,
    FaultAction,
    FetchHistory,
    HistoryPage,
    Op,
    Outcome,
    Phase,
    Replied,
    Resume,
)
from harness.report import junit, markdown, write_all
from harness.results import RunResult, ScenarioResult, StepResult

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def ops(*lines: tuple[int, str, Phase, float, Body]) -> list[Op]:
    """A history from (op id, process, phase, time, body) lines, indexed in order."""
    return [
        Op(index=i, id=op_id, process=process, phase=phase, time=time, body=body)
        for i, (op_id, process, phase, time, body) in enumerate(lines)
    ]


PASSING = ScenarioResult(
    name="history survives a reset",
    file="scenarios/golden/01_pass.yaml",
    status="passed",
    clock="virtual",
    seconds=0.512345,
    virtual_seconds=15.0,
    target="embedded reference server at ws://127.0.0.1:40001/ws (SQLite store, virtual clock)",
    driver="reference",
    tags=["golden", "history"],
    steps=[
        StepResult(path="1", kind="connect", status="passed", message="new session", seconds=0.003),
        StepResult(
            path="2", kind="chat", status="passed", message="2 message(s) answered", seconds=0.05
        ),
        StepResult(path="3", kind="snapshot", status="passed", message="before: 4 turns"),
        StepResult(path="4", kind="fault", status="passed", message="latency on downstream"),
        StepResult(path="5", kind="drop", status="passed", message="reset", seconds=0.04),
        StepResult(path="6", kind="wait", status="passed", message="15 s of virtual time"),
        StepResult(path="7", kind="resume", status="passed", message="full after a 15.040 s gap"),
        StepResult(
            path="8",
            kind="expect",
            status="passed",
            message="9 messages, each once, in order; 96.0% of context kept",
            verdicts=[
                Verdict(check="delivery", passed=True, message="9 messages, each once, in order"),
                Verdict(
                    check="context",
                    passed=True,
                    message="96.0% of context kept",
                    evidence={"ratio": 0.96, "changed": ["mood"]},
                ),
            ],
        ),
    ],
    history=ops(
        (1, "fault", "invoke", 0.1, FaultAction(action="create", upstream="127.0.0.1:40001")),
        (1, "fault", "ok", 0.1, Done()),
        (2, "client", "invoke", 0.147, Connect()),
        (2, "client", "ok", 0.15, Outcome(kind="new", session="S", stream="S#1", after=0)),
        (3, "client", "invoke", 0.16, AwaitReply(message_id="m1", timeout=5.0)),
        (4, "client", "event", 0.17, Delivered(stream="S#1", position=1, kind="reply")),
        (3, "client", "ok", 0.18, Replied(parts=1)),
        (5, "client", "invoke", 0.185, FetchHistory()),
        (5, "client", "ok", 0.186, HistoryPage(turns=())),
        (
            6,
            "fault",
            "invoke",
            0.2,
            FaultAction(action="add_toxic", toxic="latency-1", toxic_type="latency"),
        ),
        (6, "fault", "ok", 0.2, Done()),
        (7, "client", "invoke", 0.3, Disconnect(how="reset")),
        (7, "client", "ok", 0.3, Done()),
        (8, "clock", "invoke", 0.31, AdvanceClock(seconds=15.0)),
        (8, "clock", "ok", 0.31, Done()),
        (9, "client", "invoke", 0.346, Resume()),
        (9, "client", "ok", 0.35, Outcome(kind="full", gap_s=15.04, session="S", stream="S#1")),
        (10, "fault", "invoke", 0.4, FaultAction(action="heal")),
        (10, "fault", "ok", 0.4, Done()),
        (11, "fault", "invoke", 0.5, FaultAction(action="delete")),
        (11, "fault", "ok", 0.5, Done()),
    ),
)

FAILING = ScenarioResult(
    name="a doubled replay is caught",
    file="scenarios/golden/02_fail.yaml",
    status="failed",
    clock="virtual",
    seconds=1.25,
    target="embedded reference server at ws://127.0.0.1:40003/ws (SQLite store, virtual clock)",
    driver="reference",
    tags=["golden"],
    steps=[
        StepResult(path="1", kind="connect", status="passed", message="new session"),
        StepResult(path="2", kind="drop", status="passed", message="close"),
        StepResult(path="3", kind="resume", status="passed", message="full after a 0.004 s gap"),
        StepResult(
            path="4",
            kind="expect",
            status="failed",
            message="expected delivery to hold; saw position 5 was delivered twice | once more",
            expected="delivery to hold",
            seen="position 5 was delivered twice | once more",
            evidence={"duplicated": [5]},
            seconds=0.0001,
            verdicts=[
                Verdict(check="history", passed=True, message="4 turns stored"),
                Verdict(
                    check="delivery",
                    passed=False,
                    message="position 5 was delivered twice",
                    evidence={"duplicated": [5], "lost": []},
                ),
            ],
        ),
    ],
    history=ops(
        (1, "client", "invoke", 0.1575, Connect()),
        (1, "client", "ok", 0.16, Outcome(kind="new", session="S", stream="S#1", after=0)),
        (2, "client", "invoke", 0.2, Disconnect(how="close")),
        (2, "client", "ok", 0.2, Done()),
        (3, "client", "invoke", 0.205, Resume()),
        (3, "client", "fail", 0.21, Failure(error="resume: ConnectionRefusedError")),
        (4, "client", "invoke", 0.2469, Resume(attempt=2)),
        (4, "client", "ok", 0.25, Outcome(kind="full", session="S", stream="S#1", after=4)),
        (5, "client", "event", 0.26, Delivered(stream="S#1", position=5, kind="reply")),
        (6, "client", "event", 0.261, Delivered(stream="S#1", position=5, kind="reply")),
    ),
)

SKIPPED = ScenarioResult(
    name="needs clock control",
    file="scenarios/golden/03_skip.yaml",
    status="skipped",
    clock=None,
    error="the target offers no clock control",
    seconds=0.01,
    tags=["golden"],
)

ERRORED = ScenarioResult(
    name="waits too long",
    file="scenarios/golden/04_error.yaml",
    status="error",
    clock="real",
    error="timed out after 2 s",
    seconds=2.003,
    steps=[StepResult(path="1", kind="wait", status="error", message="cancelled")],
)

RECORD = RunResult(
    tool="harness golden",
    started="2026-01-02T03:04:05Z",
    seconds=3.789,
    suite="scenarios/golden",
    seed=7,
    shard=None,
    environment={
        "toxiproxy": "2.12.0 (http://127.0.0.1:8474)",
        "python": "3.11.7",
        "platform": "Linux 6.1, 2 cores",
        "target": "embedded reference server (one per scenario)",
    },
    scenarios=[PASSING, FAILING, SKIPPED, ERRORED],
)


def check_golden(name: str, actual: str) -> None:
    """Compare ``actual`` with tests/golden/<name>; with UPDATE_GOLDEN=1, rewrite the file."""
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8", newline="\n")
    assert path.read_text(encoding="utf-8") == actual


# --- golden files --------------------------------------------------------------------------


def test_markdown_report_matches_its_golden_file() -> None:
    """report.md of the hand-built run is exactly tests/golden/report.md."""
    check_golden("report.md", markdown.render(RECORD))


def test_junit_report_matches_its_golden_file() -> None:
    """junit.xml of the hand-built run is exactly tests/golden/junit.xml."""
    check_golden("junit.xml", junit.render(RECORD))


def test_results_json_matches_its_golden_file(tmp_path: Path) -> None:
    """results.json of the hand-built run, as `write` encodes it, is tests/golden/results.json."""
    results.write(RECORD, tmp_path / "results.json")
    check_golden("results.json", (tmp_path / "results.json").read_text(encoding="utf-8"))


def test_rendering_is_deterministic() -> None:
    """The same record gives byte-identical reports, and so does its decoded copy."""
    copy = msgspec.json.decode(results.encode(RECORD), type=RunResult, dec_hook=results._dec_hook)
    assert (markdown.render(RECORD), junit.render(RECORD)) == (
        markdown.render(copy),
        junit.render(copy),
    )


# --- what the golden reports must contain --------------------------------------------------


def test_markdown_report_has_its_sections_and_a_fault_timeline() -> None:
    """report.md has every section, the failure with its evidence and a mermaid timeline."""
    text = markdown.render(RECORD)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert [
        "## Summary",
        "## Skipped",
        "## Failures",
        "## Results per scenario",
        "## Performance",
        "## Environment",
        "## Recommendations",
    ] == headings
    assert "- **Evidence:** duplicated=[5], lost=[]" in text
    assert "    Note over Server: 0.31s clock +15s" in text
    assert "    Note over Proxy: 0.20s add_toxic latency" in text
    assert "    Server-->>Client: 0.26s client position 5 again" in text
    assert "Note over Proxy: 0.10s create" not in text
    assert "position 5 was delivered twice \\| once more" in text


def test_junit_report_has_one_case_per_scenario_with_its_outcome() -> None:
    """junit.xml has one testcase per scenario, failure/skipped/error children and properties."""
    suite = ET.fromstring(junit.render(RECORD).split("\n", 1)[1])
    assert ("4", "1", "1", "1") == tuple(
        suite.get(k) for k in ("tests", "failures", "errors", "skipped")
    )
    outcomes = [
        (case.get("name"), [child.tag for child in case if child.tag != "properties"])
        for case in suite.iter("testcase")
    ]
    assert [
        ("history survives a reset", []),
        ("a doubled replay is caught", ["failure"]),
        ("needs clock control", ["skipped"]),
        ("waits too long", ["error"]),
    ] == outcomes
    failure = suite.find("testcase/failure")
    assert failure is not None
    assert failure.get("message", "").startswith("step 4 (expect): expected delivery to hold")
    assert "evidence: {'duplicated': [5]}" in (failure.text or "")


# --- results.json: read, merge, write_all ---------------------------------------------------


def test_read_gives_back_what_write_wrote(tmp_path: Path) -> None:
    """A record written and read again is the same record."""
    results.write(RECORD, tmp_path / "results.json")
    assert RECORD == results.read(tmp_path / "results.json")


def test_read_rejects_a_file_that_is_not_json(tmp_path: Path) -> None:
    """A file that is not JSON is a ValueError naming the file."""
    path = tmp_path / "results.json"
    path.write_text("<html>not json</html>", encoding="utf-8")
    with pytest.raises(ValueError, match="not a harness results file"):
        results.read(path)


def test_read_rejects_another_schema_version(tmp_path: Path) -> None:
    """A results file of another schema version is a ValueError naming both versions."""
    data = json.loads(results.encode(RECORD))
    data["schema_version"] = results.SCHEMA_VERSION + 1
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"schema_version 3, this harness reads 2"):
        results.read(path)


def test_merge_combines_shards_in_file_order() -> None:
    """Merging two shards keeps every scenario, sorted by file, the earliest start, no shard."""
    first = msgspec.structs.replace(
        RECORD, shard="1/2", started="2026-01-02T03:05:00Z", scenarios=[FAILING, ERRORED]
    )
    second = msgspec.structs.replace(RECORD, shard="2/2", seconds=9.5, scenarios=[SKIPPED, PASSING])
    merged = results.merge([first, second])
    assert [PASSING.file, FAILING.file, SKIPPED.file, ERRORED.file] == [
        s.file for s in merged.scenarios
    ]
    assert ("2026-01-02T03:04:05Z", 9.5, None) == (merged.started, merged.seconds, merged.shard)
    assert {"passed": 1, "failed": 1, "error": 1, "skipped": 1, "total": 4} == merged.totals


def test_merge_keeps_every_shards_environment() -> None:
    """A value the shards agree on stays as it is; values that differ are named by shard."""
    first = msgspec.structs.replace(
        RECORD, shard="1/2", environment={"target": "embedded", "spread": "2 workers"}
    )
    second = msgspec.structs.replace(
        RECORD, shard="2/2", environment={"target": "embedded", "spread": "1 worker", "x": "y"}
    )
    merged = results.merge([first, second])
    assert merged.environment == {
        "target": "embedded",
        "spread": "1/2: 2 workers; 2/2: 1 worker",
        "x": "y",
    }


def test_merge_of_nothing_is_an_error() -> None:
    """Merging no records is a ValueError."""
    with pytest.raises(ValueError, match="nothing to merge"):
        results.merge([])


def test_write_all_writes_a_stamped_folder_and_latest(tmp_path: Path) -> None:
    """write_all writes the four files to <stamp>/ and mirrors them in latest/."""
    folder = write_all(RECORD, tmp_path, "20260102T030405Z")
    names = {"results.json", "report.md", "junit.xml", "report.html"}
    assert (tmp_path / "20260102T030405Z", names) == (folder, {p.name for p in folder.iterdir()})
    assert names == {p.name for p in (tmp_path / "latest").iterdir()}
    latest = (tmp_path / "latest" / "report.md").read_text(encoding="utf-8")
    assert markdown.render(RECORD) == latest


# --- `harness report` -------------------------------------------------------------------------


def test_report_command_renders_junit_from_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness report results.json --format junit` prints the junit.xml of that run."""
    results.write(RECORD, tmp_path / "results.json")
    code = main(["report", str(tmp_path / "results.json"), "--format", "junit"])
    assert (exit_codes.OK, junit.render(RECORD)) == (code, capsys.readouterr().out)


def test_report_command_renders_markdown_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness report results.json` prints report.md; --output writes it to a file instead."""
    results.write(RECORD, tmp_path / "results.json")
    assert exit_codes.OK == main(["report", str(tmp_path / "results.json")])
    assert markdown.render(RECORD) == capsys.readouterr().out
    out = tmp_path / "again.md"
    assert exit_codes.OK == main(["report", str(tmp_path / "results.json"), "--output", str(out)])
    assert markdown.render(RECORD) == out.read_text(encoding="utf-8")


def test_report_command_merges_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`harness report --merge a.json b.json --format json` prints the merged record."""
    a = msgspec.structs.replace(RECORD, shard="1/2", scenarios=[PASSING, SKIPPED])
    b = msgspec.structs.replace(RECORD, shard="2/2", scenarios=[FAILING, ERRORED])
    results.write(a, tmp_path / "a.json")
    results.write(b, tmp_path / "b.json")
    args = ["report", "--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    assert exit_codes.OK == main([*args, "--format", "json"])
    merged = msgspec.json.decode(
        capsys.readouterr().out, type=RunResult, dec_hook=results._dec_hook
    )
    assert results.merge([a, b]) == merged


def test_report_command_needs_merge_for_several_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two results files without --merge are a usage error."""
    results.write(RECORD, tmp_path / "a.json")
    results.write(RECORD, tmp_path / "b.json")
    code = main(["report", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert exit_codes.USAGE_ERROR == code
    assert "several results files need --merge" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, "{not json", '{"schema_version": 99}'])
def test_report_command_rejects_a_bad_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    """A missing, non-JSON or foreign results file is a usage error naming the file."""
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert exit_codes.USAGE_ERROR == main(["report", str(path)])
    error = capsys.readouterr().err
    assert error.startswith("harness: ")
    assert str(path) in error


def test_report_command_json_is_the_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness report results.json --format json` prints the file exactly as a run wrote it."""
    results.write(RECORD, tmp_path / "results.json")
    assert exit_codes.OK == main(["report", str(tmp_path / "results.json"), "--format", "json"])
    assert (tmp_path / "results.json").read_text(encoding="utf-8") == capsys.readouterr().out


# --- a run that verified nothing ------------------------------------------------------------


def test_a_run_of_skipped_scenarios_verified_nothing_in_every_writer() -> None:
    """All skipped is not green: the verdict, report.md and junit.xml say nothing was verified."""
    record = msgspec.structs.replace(RECORD, scenarios=[SKIPPED])
    assert ("nothing_verified", False) == (record.verdict, record.passed)
    text = markdown.render(record)
    assert "**Result:** ⏭️ NOTHING VERIFIED (no scenario passed)" in text
    assert "- **Nothing verified:** no scenario passed; 1 skipped" in text
    assert "ALL PASSED" not in text
    assert 'name="verdict" value="nothing_verified"' in junit.render(record)


def test_a_run_of_no_scenario_verified_nothing() -> None:
    """A run with no scenario at all verified nothing either."""
    assert "nothing_verified" == msgspec.structs.replace(RECORD, scenarios=[]).verdict


def test_nothing_verified_has_its_own_exit_code_unless_allowed() -> None:
    """Exit 4 for a run that verified nothing; 0 with --allow-skipped; 1 when one failed."""
    from harness.commands import exit_code

    skipped = msgspec.structs.replace(RECORD, scenarios=[SKIPPED])
    allowed = msgspec.structs.replace(skipped, allow_skipped=True)
    failed = msgspec.structs.replace(RECORD, scenarios=[PASSING, FAILING])
    assert (exit_codes.NOTHING_VERIFIED, exit_codes.OK, exit_codes.SCENARIO_FAILED) == (
        exit_code(skipped),
        exit_code(allowed),
        exit_code(failed),
    )


def herd_record(clients: int, failing: int) -> RunResult:
    """A herd of ``clients`` in a `parallel` group at step 1; the last ``failing`` of them
    fail their resume (step 2 of the group)."""
    steps = [StepResult(path="1", kind="parallel", status="failed" if failing else "passed")]
    for i in range(clients):
        name = f"herd{i}"
        steps.append(
            StepResult(
                path=f"1.{name}.1",
                kind="connect",
                status="passed",
                client=name,
                message="new session",
            )
        )
        bad = i >= clients - failing
        steps.append(
            StepResult(
                path=f"1.{name}.2",
                kind="resume",
                status="failed" if bad else "passed",
                client=name,
                message="expected resume full; saw degraded" if bad else f"full after {i} s",
            )
        )
    scenario = ScenarioResult(name="herd", file="herd.yaml", status="failed", steps=steps)
    return RunResult(started="2026-12-02T00:00:00Z", seconds=1.0, scenarios=[scenario])


def test_a_herds_steps_are_one_row_each_with_the_clients_that_did_not_pass_listed() -> None:
    text = markdown.render(herd_record(40, failing=12))
    assert "| 1.*.1 | connect (40 clients) | 40 passed | new session (40) |" in text
    assert "| 1.*.2 | resume (40 clients) | 28 passed, 12 failed | 28 different answers, e.g." in (
        text
    )
    listed = [line for line in text.splitlines() if line.startswith("| 1.herd")]
    assert 10 == len(listed)
    assert all("saw degraded" in line for line in listed)
    assert "| … | resume | 2 more | listed in report.html and results.json |" in text
    assert "| 1.herd3.1 |" not in text


def test_a_small_group_keeps_a_row_per_client() -> None:
    text = markdown.render(herd_record(3, failing=0))
    assert "| 1.herd0.1 | connect | passed | new session |" in text
    assert "(3 clients)" not in text
