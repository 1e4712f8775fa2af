"""The run engine: the one way scenarios run, for the CLI, the pytest plugin and selfcheck.

One Toxiproxy for the engine's life (started here, or the one ``TOXIPROXY_URL`` names); per
scenario a plan (decided before any socket opens), a target (a fresh embedded reference
server, or the external one), a proxy, the clients' drivers, and a history. Scenarios run
concurrently up to ``jobs``, each bounded by its own timeout; ``fail_fast`` stops starting new
ones after the first failure.

Blame goes to the right party: a watchdog asks Toxiproxy for its version while scenarios run;
when it stops answering, every running scenario ends at once as an infrastructure error (not
the target's failure) and the ones not started end with that error without starting.

Whatever happens (failure, timeout, Ctrl-C), every proxy, server process and temporary folder
is removed before the engine's context exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

import msgspec

from harness import baseline
from harness.baseline import Baseline
from harness.driver import connect_errors, registry
from harness.driver.base import DriverFactory, EmbeddedTargets
from harness.errors import HarnessInfrastructureError
from harness.estimate import format_seconds
from harness.faults.layer import FaultLayer
from harness.faults.nodes import NodeFaults
from harness.faults.toxiproxy_client import ToxiproxyClient
from harness.faults.toxiproxy_server import ToxiproxyServer
from harness.history import History
from harness.plan import Plan, plan
from harness.results import RunResult, ScenarioResult
from harness.runner import ScenarioRun, Waits, timeout_factor
from harness.scenario import model as m
from harness.targets.base import Target, upstream
from harness.targets.external import ExternalTarget, probe_metrics
from harness.workers import DEFAULT_THRESHOLD, Spread, default_workers

Progress = Callable[[str, str], None]

PREFLIGHT_S: Final = 3.0
"""How long an external target has to accept a TCP connection before the run."""

LOAD_LIMIT: Final = 10
"""Connections at once a scenario may open against an external target without consent."""

FDS_PER_CONNECTION: Final = 2
"""File descriptors one client connection costs the process that holds the most of them:
Toxiproxy, which holds both ends (the client's and the target's)."""

FDS_RESERVE: Final = 256
"""File descriptors of a process besides its connections (files, pipes, the API's sockets)."""


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit, so that a herd of
    connections fits (Toxiproxy and the reference server, started after this, inherit it);
    return the (soft, hard) limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft, hard


def fds_needed(connections: int) -> int:
    """File descriptors the busiest process needs for ``connections`` client connections."""
    return connections * FDS_PER_CONNECTION + FDS_RESERVE


@dataclass
class RunOptions:
    """How to run scenarios."""

    target_url: str | None = None
    token_env: str | None = None
    admin_token_env: str | None = None
    driver: str = "reference"
    clock: Literal["virtual", "real", "auto"] | None = None
    jobs: int = 1
    fail_fast: bool = False
    seed: int | None = None
    """Seeds the clients' backoff jitter; recorded in the report (Toxiproxy ignores seeds)."""
    allow_skipped: bool = False
    """A run that verified nothing exits 0 (the reports still say it verified nothing)."""
    baseline: Baseline | None = None
    """A saved run to compare each scenario's latencies with (``--baseline``)."""
    allow_load: int | None = None
    """Against an external target: how many connections at once the user consents to
    (``--allow-load``); without it, ``LOAD_LIMIT``."""
    max_wall: float | None = None
    """Seconds of real waiting the whole run may take (``--max-wall``). Without it, explicit
    real-clock scenarios are not limited, and a scenario that would fall back to the real
    clock (``auto`` on a target without clock control) runs only if it waits for nothing."""
    credentials: dict[str, str] | None = None
    """Per simulated user, where an external target's credential comes from (``--credential
    USER=env:NAME`` or ``USER=cmd:COMMAND``; ``*`` for every other user)."""
    watchdog_interval: float = 0.5
    workers: int | None = None
    """Worker processes a large `parallel` group may be spread over (``--workers``); None:
    one per core this process may run on. 1: every group in this process."""
    spread_threshold: int = DEFAULT_THRESHOLD
    """Groups of fewer clients stay in one process."""
    nodes: int | None = None
    """Run every scenario against an embedded cluster of this many nodes (``--nodes``)."""


class Engine:
    """``async with Engine(options) as engine: result = await engine.run(scenarios)``."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.factory: DriverFactory = registry.load(options.driver)
        self.waits = Waits().scaled(timeout_factor())
        self._toxiproxy = ToxiproxyServer()
        self._api: ToxiproxyClient | None = None
        self._fault_layer_lost = asyncio.Event()
        self._external_metrics: bool | None = None
        self._unreachable: str | None = None
        self.probe = True
        """Whether planning may ask an external target for /metrics (``harness plan``: no)."""
        self.environment: dict[str, str] = {}
        self.workers = options.workers if options.workers is not None else default_workers()
        self.fd_limit = raise_fd_limit()
        self._spread_notes: list[str] = []

    async def __aenter__(self) -> Self:
        await self._toxiproxy.start()
        try:
            self._api = ToxiproxyClient(self._toxiproxy.url)
            self.environment = {
                "toxiproxy": f"{self._toxiproxy.version} ({self._toxiproxy.url})",
                "python": platform.python_version(),
                "platform": f"{platform.system()} {platform.release()}, {os.cpu_count()} cores",
                "target": self.options.target_url
                or f"embedded {self.factory.info.name} server (one per scenario)",
                "driver": self.factory.info.name,
            }
            if self.options.target_url is not None:
                limit = self.options.allow_load
                self.environment["load consent"] = (
                    f"up to {limit} connections at once (--allow-load {limit})"
                    if limit is not None
                    else f"none given: scenarios of more than {LOAD_LIMIT} connections skipped"
                )
            if self.options.max_wall is not None:
                self.environment["real-time budget"] = format_seconds(self.options.max_wall)
            self.environment["workers"] = (
                f"up to {self.workers} processes for a `parallel` group of "
                f"{self.options.spread_threshold} clients or more"
                if self.workers > 1
                else "none: every group in one process"
            )
            self.environment["file descriptors"] = (
                f"{self.fd_limit[0]} (soft limit raised to the hard limit)"
                if self.fd_limit[0] == self.fd_limit[1]
                else f"{self.fd_limit[0]} (the hard limit, {self.fd_limit[1]}, could not be set)"
            )
        except BaseException:
            await self._toxiproxy.stop()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._api is not None:
                await self._api.aclose()
        finally:
            await self._toxiproxy.stop()

    @property
    def toxiproxy(self) -> ToxiproxyServer:
        """The engine's running Toxiproxy server."""
        return self._toxiproxy

    @property
    def api(self) -> ToxiproxyClient:
        assert self._api is not None, "use the engine as an async context manager"
        return self._api

    # --- a whole run ---------------------------------------------------------------------

    async def run(
        self,
        scenarios: Sequence[tuple[Path, m.Scenario]],
        *,
        suite: str = "",
        shard: str | None = None,
        progress: Progress | None = None,
    ) -> RunResult:
        """Run the scenarios, ``jobs`` at a time, under the fault-layer watchdog."""
        started = dt.datetime.now(dt.UTC)
        clock_start = time.perf_counter()
        report = progress or (lambda name, status: None)
        results: dict[int, ScenarioResult] = {}
        gate = asyncio.Semaphore(max(1, self.options.jobs))
        stop = asyncio.Event()

        decided = await self.plans(scenarios)

        async def one(index: int, path: Path, scenario: m.Scenario) -> None:
            async with gate:
                if stop.is_set():
                    results[index] = ScenarioResult(
                        name=scenario.name,
                        file=str(path),
                        status="skipped",
                        error="not run: --fail-fast stopped the run",
                        tags=list(scenario.tags),
                    )
                    return
                report(scenario.name, "running")
                result = await self.run_scenario(
                    path, scenario, progress=report, decided=decided[index]
                )
                results[index] = result
                report(scenario.name, result.status)
                if self.options.fail_fast and result.status in ("failed", "error"):
                    stop.set()

        async with asyncio.TaskGroup() as group:
            watchdog = group.create_task(self._watch())
            try:
                async with asyncio.TaskGroup() as scenarios_group:
                    for i, (p, s) in enumerate(scenarios):
                        scenarios_group.create_task(one(i, p, s))
            finally:
                watchdog.cancel()
        if self._spread_notes:
            self.environment["spread"] = "; ".join(self._spread_notes)
        return RunResult(
            started=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            seconds=round(time.perf_counter() - clock_start, 6),
            suite=suite,
            seed=self.options.seed,
            shard=shard,
            allow_skipped=self.options.allow_skipped,
            environment=dict(self.environment),
            scenarios=[results[i] for i in range(len(scenarios))],
        )

    async def _watch(self) -> None:
        """Set the lost flag once Toxiproxy has missed two probes in a row (each bounded by
        ``Waits.fault_probe``: about 6 s of silence, never one slow answer under load)."""
        misses = 0
        while True:
            await asyncio.sleep(self.options.watchdog_interval)
            try:
                async with asyncio.timeout(self.waits.fault_probe):
                    await self.api.version()
                misses = 0
            except (TimeoutError, HarnessInfrastructureError):
                misses += 1
                if misses >= 2:
                    self._fault_layer_lost.set()
                    return

    # --- one scenario --------------------------------------------------------------------

    async def plan_for(self, scenario: m.Scenario) -> Plan:
        """What the scenario will take against this engine's target and driver."""
        external = self.options.target_url is not None
        return plan(
            scenario,
            driver=self.factory.info.capabilities,
            target=await self._target_capabilities(scenario),
            clock=self.options.clock,
            load_limit=(self.options.allow_load or LOAD_LIMIT) if external else None,
        )

    async def plans(self, scenarios: Sequence[tuple[Path, m.Scenario]]) -> list[Plan]:
        """Every scenario's plan, in run order, with the real-time budget kept across them."""
        decided = [await self.plan_for(s) for _, s in scenarios]
        soft, hard = self.fd_limit
        for i, one in enumerate(decided):
            need = fds_needed(one.estimate.connections)
            if one.runnable and soft != resource.RLIM_INFINITY and need > soft:
                decided[i] = one.refuse(
                    f"it opens {one.estimate.connections} connections at once, which need about "
                    f"{need} file descriptors in Toxiproxy ({FDS_PER_CONNECTION} per "
                    f"connection), and the limit here is {soft} (hard limit {hard}): raise "
                    "the hard limit (`ulimit -Hn`, or LimitNOFILE= for a service)"
                )
        budget, spent = self.options.max_wall, 0.0
        for i, one in enumerate(decided):
            waits = one.estimate.real_seconds
            if not one.runnable or one.clock != "real" or waits <= 0:
                continue
            limit = budget if budget is not None else (0.0 if one.fallback else None)
            if limit is None or spent + waits <= limit:
                spent += waits
                continue
            why = (
                "the target has no clock control, so it would wait "
                if one.fallback
                else ("it would wait ")
            )
            decided[i] = one.refuse(
                f"{why}{format_seconds(waits)} in real time, beyond the run's real-time budget "
                f"(--max-wall {format_seconds(limit)}, {format_seconds(spent)} already planned); "
                f"allow it with --max-wall {format_seconds(spent + waits)}"
            )
        return decided

    def _embedded(self) -> EmbeddedTargets:
        embedded: EmbeddedTargets | None = getattr(self.factory, "embedded", None)
        if embedded is None:
            raise HarnessInfrastructureError(
                f"the {self.factory.info.name} driver starts no server of its own: "
                "give one with --target URL"
            )
        return embedded

    async def _target_capabilities(self, scenario: m.Scenario) -> frozenset[str]:
        if self.options.target_url is None:
            capabilities = self._embedded().capabilities(virtual_clock=True)
            nodes = self.options.nodes or scenario.nodes
            if nodes > 1 and "embedded" in capabilities:  # the reference server as a cluster
                capabilities |= {"nodes"}
            return capabilities
        if self._external_metrics is None:
            self._external_metrics = (
                await probe_metrics(self.options.target_url) if self.probe else False
            )
        return self._external(self.options.target_url).capabilities

    def _external(self, url: str) -> ExternalTarget:
        admin = os.environ.get(self.options.admin_token_env or "", "")
        clock_control = getattr(self.factory, "clock_control", None)
        clock = clock_control(url, admin) if admin and clock_control else None
        return ExternalTarget(
            url,
            self.options.token_env,
            clock=clock,
            has_metrics=bool(self._external_metrics),
            credentials=self.options.credentials,
        )

    def _target(self, scenario: m.Scenario, virtual_clock: bool) -> Target:
        if self.options.target_url is not None:
            return self._external(self.options.target_url)
        if self.options.nodes is not None:
            scenario = msgspec.structs.replace(scenario, nodes=self.options.nodes)
        return self._embedded().target(scenario, virtual_clock=virtual_clock)

    async def run_scenario(
        self,
        path: Path,
        scenario: m.Scenario,
        *,
        progress: Progress | None = None,
        decided: Plan | None = None,
    ) -> ScenarioResult:
        """Plan, then run one scenario against a fresh embedded target (or the external one)."""
        started = time.perf_counter()
        result = ScenarioResult(
            name=scenario.name,
            file=str(path),
            status="error",
            tags=list(scenario.tags),
            driver=self.factory.info.name,
            positions=self.factory.info.positions.order,
            scenario=scenario,
        )
        if self._fault_layer_lost.is_set():
            return self._lost(result, started)
        try:
            decided = decided or (await self.plans([(path, scenario)]))[0]
        except HarnessInfrastructureError as exc:
            result.error, result.infrastructure = f"infrastructure: {exc}", True
            return result
        if not decided.runnable:
            result.status, result.error = "skipped", decided.reason
            return result
        unreachable = await self._preflight()
        if unreachable:
            result.error, result.infrastructure = f"infrastructure: {unreachable}", True
            return result
        assert decided.clock is not None
        history = History()
        try:
            target = self._target(scenario, virtual_clock=decided.clock == "virtual")
        except HarnessInfrastructureError as exc:
            result.error, result.infrastructure = f"infrastructure: {exc}", True
            return result
        node_urls: list[str] | None = getattr(target, "node_urls", None)
        faults: FaultLayer | NodeFaults = (
            FaultLayer(self.api, history, scenario.name)
            if node_urls is None
            else NodeFaults(self.api, history, scenario.name, getattr(target, "count", 1))
        )
        spread: Spread | None = None
        result.clock = decided.clock
        try:
            if isinstance(faults, NodeFaults):  # the nodes reach Redis through their proxy
                store = await faults.start_store(target.store_upstream)  # type: ignore[attr-defined]
                target.store_address = store  # type: ignore[attr-defined]
            await target.start()
            result.target = target.description
            if isinstance(faults, NodeFaults):
                await faults.start_nodes([upstream(url) for url in target.node_urls])  # type: ignore[attr-defined]
            else:
                await faults.start(upstream(target.url))

            def on_step(step_path: str, kind: str) -> None:
                if progress is not None:
                    progress(scenario.name, f"running step {step_path} ({kind})")

            # A cluster's clients are routed node by node in this process: no workers for it.
            spread = (
                None
                if isinstance(faults, NodeFaults)
                else Spread(
                    workers=self.workers,
                    driver=self.options.driver,
                    toxiproxy_url=self._toxiproxy.url,
                    threshold=self.options.spread_threshold,
                )
            )
            run = ScenarioRun(
                scenario,
                target=target,
                faults=faults,
                history=history,
                driver=self.factory,
                clock=decided.clock,
                seed=self.options.seed,
                waits=self.waits,
                on_step=on_step,
                spread=spread,
            )
            try:
                outcome = await self._race(run, float(scenario.timeout))
            finally:
                if spread is not None:
                    self._spread_notes.extend(f"{scenario.name}, {note}" for note in spread.notes)
            result.steps = run.steps
            result.virtual_seconds = run.virtual_seconds
            if outcome == "lost":
                self._lost(result, started)
            elif outcome == "timeout":
                result.status, result.error = "error", f"timed out after {scenario.timeout:g} s"
            elif any(s.status in ("failed", "error") for s in run.steps):
                result.status = "error" if any(s.status == "error" for s in run.steps) else "failed"
            else:
                result.status = "passed"
            if result.status == "passed" and self.options.baseline is not None:
                result.history = history.ops
                against = baseline.compare(result, self.options.baseline)
                if against is not None:
                    result.steps.append(against)
                    if against.status == "failed":
                        result.status = "failed"
        except HarnessInfrastructureError as exc:
            result.status, result.error, result.infrastructure = (
                "error",
                f"infrastructure: {exc}",
                True,
            )
        finally:
            if spread is not None:
                await spread.aclose(history)
            history.close_unfinished("the scenario ended before it completed")
            result.history = history.ops
            result.seconds = round(time.perf_counter() - started, 6)
            with contextlib.suppress(HarnessInfrastructureError):
                if not self._fault_layer_lost.is_set():
                    await faults.close()
            await target.stop()
        return result

    async def _preflight(self) -> str:
        """An external target that does not even accept a TCP connection: say so once, in
        the user's words, instead of a failed handshake per scenario (asked once per run)."""
        url = self.options.target_url
        if url is None:
            return ""
        if self._unreachable is None:
            host, _, port = upstream(url).rpartition(":")
            try:
                async with asyncio.timeout(PREFLIGHT_S):
                    _, writer = await asyncio.open_connection(host, int(port))
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                self._unreachable = ""
            except (OSError, TimeoutError) as exc:
                self._unreachable = connect_errors.describe(exc, url)
        return self._unreachable

    async def _race(self, run: ScenarioRun, timeout: float) -> Literal["done", "timeout", "lost"]:
        """Run the scenario until it ends, its timeout passes, or the fault layer is lost."""
        try:
            async with asyncio.timeout(timeout):
                try:
                    async with asyncio.TaskGroup() as group:
                        running = group.create_task(run.run())

                        async def cancel_when_lost() -> None:
                            await self._fault_layer_lost.wait()
                            running.cancel()

                        watcher = group.create_task(cancel_when_lost())
                        running.add_done_callback(lambda _: watcher.cancel())
                except* HarnessInfrastructureError as errors:
                    raise errors.exceptions[0] from None
        except TimeoutError:
            return "timeout"
        return "lost" if running.cancelled() else "done"

    def _lost(self, result: ScenarioResult, started: float) -> ScenarioResult:
        result.status = "error"
        result.infrastructure = True
        result.error = (
            "infrastructure: the fault layer (Toxiproxy) stopped answering; nothing after that "
            "point is the target's failure"
        )
        result.seconds = round(time.perf_counter() - started, 6)
        return result
