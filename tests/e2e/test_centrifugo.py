"""The Centrifugo driver and target against the real server (6.9.1), through the real Toxiproxy.

Needs the binary (``scripts/setup --with-centrifugo``; ``scripts/test`` installs it). The
contract checks here are minimal ones written before the driver conformance kit
(``harness.driver.conformance``) landed; they hold the promises of docs/architecture.md
("The driver contract") against a running server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from harness import cli, exit_codes
from harness.driver.base import CAPABILITIES, ClientConfig, Driver, DriverError, Route
from harness.driver.centrifugo import factory
from harness.faults.toxiproxy_client import ToxiproxyClient
from harness.faults.toxiproxy_server import ToxiproxyServer
from harness.history import Closed, Delivered, Notice, Observation, Violation
from harness.targets.base import TargetError, upstream
from harness.targets.centrifugo import CentrifugoTarget
from tests.conftest import scaled

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy, pytest.mark.centrifugo]

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "scenarios" / "centrifugo"
SEED = ROOT / "scenarios" / "seed"
SKIPPED = {
    "centrifugo keeps no agent context (skipped)": "'context'",
    "centrifugo has no resume token to replay (skipped)": "'resume_previous_token'",
}


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, float]:
    """One `harness run scenarios/centrifugo --driver centrifugo`: exit code, reports, seconds."""
    reports = tmp_path_factory.mktemp("reports")
    started = time.perf_counter()
    code = cli.main(
        ["run", str(SUITE), "--driver", "centrifugo", "--report-dir", str(reports), "--jobs", "4"]
    )
    return code, reports / "latest", time.perf_counter() - started


def test_the_suite_passes_with_its_findings_failing_as_declared(
    suite_run: tuple[int, Path, float],
) -> None:
    """Every scenario passes except the two skipped for a declared missing capability; each
    finding passes because its must-fail checks failed on the real server; a minute at most."""
    code, latest, seconds = suite_run
    results = json.loads((latest / "results.json").read_text())
    report = (latest / "report.md").read_text()
    assert exit_codes.OK == code, report
    statuses = {s["name"]: s["status"] for s in results["scenarios"]}
    assert dict.fromkeys(SKIPPED, "skipped") == {n: s for n, s in statuses.items() if s != "passed"}
    for scenario in results["scenarios"]:
        if scenario["name"] in SKIPPED:
            assert SKIPPED[scenario["name"]] in scenario["error"]
    findings = [s for s in results["scenarios"] if "finding" in s["tags"]]
    assert 2 == len(findings)
    for finding in findings:
        verdicts = [v for step in finding["steps"] for v in step["verdicts"]]
        caught = [v for v in verdicts if v["check"] == "must fail"]
        assert caught, finding["name"]
        assert all(v["passed"] and v["message"].startswith("caught") for v in caught)
    assert "6.9.1" in results["scenarios"][0]["target"]
    assert seconds < scaled(60)


def test_a_saved_centrifugo_run_is_judged_the_same_again(
    suite_run: tuple[int, Path, float], capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness check` finds the same verdicts in the saved histories (no live state used)."""
    _, latest, _ = suite_run
    capsys.readouterr()
    assert exit_codes.OK == cli.main(["check", str(latest / "results.json")])
    assert capsys.readouterr().out.rstrip().endswith(", 0 differ")


def test_the_seed_suite_is_skipped_on_centrifugo_never_passed(tmp_path: Path) -> None:
    """The seed scenarios want the virtual clock, which Centrifugo has not: each is skipped
    with that reason, and a run that verified nothing exits 4."""
    code = cli.main(["run", str(SEED), "--driver", "centrifugo", "--report-dir", str(tmp_path)])
    results = json.loads((tmp_path / "latest" / "results.json").read_text())
    assert exit_codes.NOTHING_VERIFIED == code
    assert {"skipped"} == {s["status"] for s in results["scenarios"]}
    assert all("'virtual_clock'" in s["error"] for s in results["scenarios"])


# --- minimal contract checks ----------------------------------------------------------------


class Rig:
    """A Centrifugo target behind its own Toxiproxy proxy, and clients routed through it."""

    def __init__(self, target: CentrifugoTarget, api: ToxiproxyClient, proxy: str, port: int):
        self.target, self.api, self.proxy, self.port = target, api, proxy, port
        self.observed: dict[str, list[Observation]] = {}
        self.drivers: list[Driver] = []

    def client(self, name: str, user: str | None = None, *, direct: bool = False) -> Driver:
        seen = self.observed.setdefault(name, [])
        route = Route(connect_to=None if direct else ("127.0.0.1", self.port))
        config = ClientConfig(
            name=name,
            url=self.target.url,
            credential=self.target.credential_for(user or name),
            route=route,
        )
        driver = factory(config, seen.append)
        self.drivers.append(driver)
        return driver

    def deliveries(self, name: str) -> list[Delivered]:
        return [o for o in self.observed[name] if isinstance(o, Delivered)]


@pytest_asyncio.fixture
async def rig(toxiproxy: ToxiproxyServer) -> AsyncIterator[Rig]:
    target = CentrifugoTarget()
    await target.start()
    try:
        async with ToxiproxyClient(toxiproxy.url) as api:
            name = f"centrifugo-contract-{target.port}"
            proxy = await api.create_proxy(name, upstream(target.url))
            made = Rig(target, api, name, proxy.port)
            try:
                yield made
            finally:
                for driver in made.drivers:
                    await driver.aclose()
                await api.delete_proxy(name)
    finally:
        await target.stop()


@pytest.mark.asyncio
async def test_contract_connect_deliver_and_recover_through_the_proxy(rig: Rig) -> None:
    """connect names session, stream and `after`; deliveries follow it densely in that stream;
    after a proxy outage the recover is full in the same stream and continues where it was."""
    alice = rig.client("alice")
    writer = rig.client("writer", user="alice", direct=True)
    started = await alice.connect(scaled(5))
    assert "new" == started.kind
    assert started.session
    assert started.stream
    assert isinstance(started.after, int)
    await writer.connect(scaled(5))
    assert 1 == await alice.await_reply(await alice.send_message("one"), scaled(5))
    await rig.api.set_enabled(rig.proxy, False)
    for _ in range(3):
        await writer.await_reply(await writer.send_message("while away"), scaled(5))
    with pytest.raises(DriverError):
        await alice.resume(scaled(1))
    await rig.api.set_enabled(rig.proxy, True)
    resumed = await alice.resume(scaled(5))
    assert ("full", started.stream, 3) == (resumed.kind, resumed.stream, resumed.replayed)
    positions = [d.position for d in rig.deliveries("alice")]
    assert list(range(started.after + 1, started.after + 5)) == positions
    assert {started.stream} == {d.stream for d in rig.deliveries("alice")}
    history = await alice.fetch_history(scaled(5))
    assert ["one", "while away", "while away", "while away"] == [t.text for t in history]
    assert history == await alice.fetch_history(scaled(5), page_size=3)


@pytest.mark.asyncio
async def test_contract_every_wait_is_bounded(rig: Rig) -> None:
    """A connect through a blackholed link, and a reply that never comes, fail with
    DriverError within their bound (plus scheduling slack), not later."""
    alice = rig.client("alice")
    await alice.connect(scaled(5))
    await rig.api.add_toxic(rig.proxy, "blackhole", "timeout", {"timeout": 0}, stream="downstream")
    started = time.perf_counter()
    with pytest.raises(DriverError):
        await alice.await_reply(await alice.send_message("void"), 0.5)
    with pytest.raises(DriverError):
        await alice.connect(0.5)
    assert time.perf_counter() - started < scaled(2.5)


@pytest.mark.asyncio
async def test_contract_observations_and_declarations(rig: Rig) -> None:
    """Only observations go through `observe`; what is not declared fails as a DriverError;
    the server's close is observed with its code and reason; aclose twice is fine."""
    alice = rig.client("alice")
    assert factory.info.capabilities <= CAPABILITIES.keys()
    await alice.connect(scaled(5))
    with pytest.raises(DriverError):
        await alice.fetch_context(scaled(1))
    with pytest.raises(DriverError):
        await alice.resume(scaled(1), token="previous")
    answer = await alice.send_raw("{not json", scaled(2), until_close=True)
    assert 3501 == answer.close
    await asyncio.sleep(0.05)
    closes = [o for o in rig.observed["alice"] if isinstance(o, Closed)]
    assert [Closed(code=3501, reason="bad_request")] == closes
    assert all(
        isinstance(o, Delivered | Notice | Closed | Violation) for o in rig.observed["alice"]
    )
    assert not alice.connected
    await alice.aclose()
    await alice.aclose()


@pytest.mark.asyncio
async def test_restart_gives_a_new_epoch_that_the_recover_reports(rig: Rig) -> None:
    """SIGKILL and restart on the same port: the memory engine lost the stream, and the
    recover says so (degraded: epoch_changed, not_recovered) in a new stream."""
    alice = rig.client("alice")
    started = await alice.connect(scaled(5))
    await alice.await_reply(await alice.send_message("before"), scaled(5))
    await rig.target.restart()
    resumed = await alice.resume(scaled(5))
    assert ("degraded", ("epoch_changed", "not_recovered")) == (resumed.kind, resumed.warnings)
    assert resumed.stream != started.stream
    assert [] == await alice.fetch_history(scaled(5))


@pytest.mark.asyncio
async def test_a_server_that_does_not_start_is_a_target_error_naming_its_log(
    tmp_path: Path,
) -> None:
    """A binary that exits at once: TargetError with the log's path and its last lines."""
    broken = tmp_path / "centrifugo"
    broken.write_text(
        "#!/bin/sh\n[ \"$1\" = version ] && exit 0\necho 'bad config: boom'\nexit 3\n"
    )
    broken.chmod(0o755)
    target = CentrifugoTarget(binary=broken, start_timeout=scaled(5))
    with pytest.raises(TargetError) as caught:
        await target.start()
    message = str(caught.value)
    assert str(target.log_path) in message
    assert "exited with code 3" in message
    assert "bad config: boom" in message
    await target.stop()
    assert target.log_path.exists()  # kept, since the message points at it
