"""The run engine end to end: re-checking saved histories, nothing-verified runs, and blame.

Real Toxiproxy, real reference servers (embedded child processes, or one started here as an
external target), the real command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from harness import cli, exit_codes, matrix_results, results
from harness.commands import exit_code
from harness.engine import Engine, RunOptions
from harness.history import Delivered
from harness.scenario import load
from reference_server import auth
from reference_server.launcher import ServerProcess
from tests.conftest import scaled

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy]

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "scenarios" / "seed"


@pytest.fixture(scope="module")
def seed_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results.json of one `harness run scenarios/seed`."""
    reports = tmp_path_factory.mktemp("reports")
    code = cli.main(["run", str(SEED), "--report-dir", str(reports), "--jobs", "2"])
    assert exit_codes.OK == code
    return reports / "latest" / "results.json"


def test_check_reproduces_every_verdict_of_the_seed_suite(
    seed_results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness check` judges each step of the saved seed run again and finds no difference."""
    capsys.readouterr()
    assert exit_codes.OK == cli.main(["check", str(seed_results)])
    out = capsys.readouterr().out
    assert out.rstrip().endswith(", 0 differ"), out
    judged = int(out.rsplit(": ", 1)[1].split(" ", 1)[0])
    assert judged > 100, out


def _edit_history(source: Path, target: Path, scenario: str, *, double: bool) -> None:
    """Copy a results file, removing (or doubling) the middle delivery of one scenario."""
    record = results.read(source)
    found = next(s for s in record.scenarios if s.name == scenario)
    deliveries = [i for i, op in enumerate(found.history) if isinstance(op.body, Delivered)]
    middle = deliveries[len(deliveries) // 2]
    op = found.history[middle]
    if double:
        found.history.insert(middle + 1, op)
    else:
        del found.history[middle]
    results.write(record, target)


@pytest.mark.parametrize("double", [False, True], ids=["removed", "doubled"])
def test_check_flips_the_verdict_of_an_edited_history(
    seed_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], double: bool
) -> None:
    """A delivery removed from (or doubled in) a saved history makes `harness check` judge the
    scenario failed where it was stored as passed, and exit 1."""
    edited = tmp_path / "edited.json"
    name = "ten reconnection cycles stay consistent"
    _edit_history(seed_results, edited, name, double=double)
    capsys.readouterr()
    assert exit_codes.SCENARIO_FAILED == cli.main(["check", str(edited)])
    out = capsys.readouterr().out
    assert f"{name}: stored passed, judged failed from its history" in out
    word = "delivered twice" if double else "never arrived"
    assert word in out


@pytest_asyncio.fixture
async def external_server(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A reference server run by someone else (no virtual clock); its URL and a token."""
    secret = secrets.token_urlsafe(32)
    server = ServerProcess(
        ["--store", f"sqlite:{tmp_path / 's.db'}"],
        env={"REFERENCE_SERVER_AUTH_SECRET": secret},
        log_path=tmp_path / "server.log",
    )
    url = await server.start()
    try:
        yield url, auth.mint("alice", secret)
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_the_seed_suite_against_a_target_without_clock_control_verifies_nothing(
    external_server: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every seed scenario needs the virtual clock; against a target without one, all are
    skipped with the reason, every report says nothing was verified, and the exit code is 4
    (0 with --allow-skipped, which the report also records)."""
    url, token = external_server
    monkeypatch.setenv("SEED_TOKEN", token)
    reports = tmp_path / "reports"
    args = ["run", str(SEED), "--target", url, "--token-env", "SEED_TOKEN"]
    code = await asyncio.to_thread(cli.main, [*args, "--report-dir", str(reports)])
    assert exit_codes.NOTHING_VERIFIED == code
    latest = reports / "latest"
    report = (latest / "report.md").read_text()
    assert "**Result:** ⏭️ NOTHING VERIFIED (no scenario passed)" in report
    assert "ALL PASSED" not in report
    assert "scenario needs target capability 'virtual_clock'" in report
    suite = ET.parse(latest / "junit.xml").getroot()
    verdict = suite.find("properties/property[@name='verdict']")
    assert verdict is not None
    assert "nothing_verified" == verdict.get("value")
    record = json.loads((latest / "results.json").read_text())
    assert {"skipped"} == {s["status"] for s in record["scenarios"]}
    allowed = [*args, "--report-dir", str(tmp_path / "again"), "--allow-skipped"]
    assert exit_codes.OK == await asyncio.to_thread(cli.main, allowed)
    again = (tmp_path / "again" / "latest" / "report.md").read_text()
    assert "NOTHING VERIFIED (no scenario passed; allowed by --allow-skipped)" in again


SLOW_SCENARIO = """\
name: {name}
clock: real
timeout: 60s
steps:
  - connect:
  - chat: 2
  - drop: {{how: proxy_down, duration: 2s}}
  - resume: full
  - chat: 2
  - expect:
      delivery: {{}}
"""


@pytest.mark.asyncio
async def test_a_frozen_fault_layer_is_blamed_not_the_target(tmp_path: Path) -> None:
    """With Toxiproxy frozen (SIGSTOP) while the first scenario runs, no scenario is reported
    as the target's failure: each ends at once as an infrastructure error, and the run exits 3."""
    paths = []
    for i in range(1, 5):
        path = tmp_path / f"s{i}.yaml"
        path.write_text(SLOW_SCENARIO.format(name=f"scenario {i}"), encoding="utf-8")
        paths.append(path)
    loaded = [(p, load(p)) for p in paths]
    async with Engine(RunOptions(jobs=1)) as engine:
        pid = engine.toxiproxy.pid
        run = asyncio.create_task(engine.run(loaded))
        await asyncio.sleep(1.0)
        started = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            record = await asyncio.wait_for(run, timeout=30)
        finally:
            os.kill(pid, signal.SIGCONT)
        took = time.monotonic() - started
    statuses = [(s.status, s.infrastructure) for s in record.scenarios]
    assert [("error", True)] * 4 == statuses, [s.error for s in record.scenarios]
    errors = [s.error for s in record.scenarios]
    assert all("Toxiproxy" in e for e in errors), errors
    assert took < scaled(20.0), f"the run took {took:.1f} s to end after the freeze"
    assert exit_codes.INFRASTRUCTURE_ERROR == exit_code(record)


def test_results_json_holds_the_scenario_and_decodes_to_the_same_record(seed_results: Path) -> None:
    """results.json carries each scenario definition and typed history; decoding it and
    encoding it again gives the same bytes."""
    record = results.read(seed_results)
    assert all(s.scenario is not None and s.history for s in record.scenarios)
    assert seed_results.read_bytes() == results.encode(record)
    raw = msgspec.json.decode(seed_results.read_bytes())
    assert "steps" in raw["scenarios"][0]["scenario"]


def test_the_fault_matrix_names_which_scenario_caught_which_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness matrix` runs a suite clean and with each fault planted: the replay check
    catches a doubled replay, nothing in this suite catches a never-expiring session, and the
    exit code says a fault survived."""
    path = tmp_path / "replay.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: replay after a blackhole
            clock: virtual
            steps:
              - connect:
              - chat: 1
              - fault: {toxic: timeout, timeout: 0s, stream: downstream}
              - chat: {text: "into the void", timeout: 1s, expect: timeout}
              - heal:
              - resume: full
              - chat: 1
              - expect:
                  delivery: {}
            """
        ),
        encoding="utf-8",
    )
    args = ["matrix", str(path), "--fault", "duplicate_replay", "--fault", "never_expire"]
    reports = tmp_path / "reports"
    assert exit_codes.SCENARIO_FAILED == cli.main([*args, "--report-dir", str(reports)])
    out = capsys.readouterr().out
    assert "**Kill rate:** 1 of 2 faults (50%)" in out
    assert "| `duplicate_replay` | ✗ | 1 |" in out
    assert "| `never_expire` | · | 0 |" in out
    # The record it wrote says the same, and the matrix.md beside it is what it printed.
    record = matrix_results.read(reports / "latest-matrix" / "matrix.json")
    assert (["never_expire"], 0.5) == (record.survivors, record.kill_rate)
    assert "caught" == record.cell("duplicate_replay", "replay after a blackhole").verdict
    assert out == (reports / "latest-matrix" / "matrix.md").read_text(encoding="utf-8")
