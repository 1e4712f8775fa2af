"""Run many scenarios: one Toxiproxy for the run, one proxy and (embedded) one server each.

Scenarios run concurrently up to ``jobs``, each bounded by its own timeout; ``fail_fast``
stops starting new ones after the first failure. Whatever happens (failure, timeout, Ctrl-C),
every proxy, server process and temporary folder is removed before this returns or raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from harness.errors import HarnessInfrastructureError
from harness.faults.layer import FaultLayer
from harness.faults.toxiproxy_client import ToxiproxyClient
from harness.faults.toxiproxy_server import ToxiproxyServer
from harness.history import History
from harness.runner import ClockMode, ScenarioRun, StepResult
from harness.scenario import model as m
from harness.target import EmbeddedTarget, ExternalTarget, Target

Status = Literal["passed", "failed", "error", "skipped"]


@dataclass
class ScenarioResult:
    """The outcome of one scenario, with everything it measured."""

    name: str
    file: str
    status: Status
    clock: ClockMode | None
    steps: list[StepResult] = field(default_factory=list)
    history: History | None = None
    error: str = ""
    seconds: float = 0.0
    virtual_seconds: float = 0.0
    target: str = ""
    tags: tuple[str, ...] = ()

    @property
    def first_failure(self) -> StepResult | None:
        return next((s for s in self.steps if s.status in ("failed", "error")), None)


@dataclass
class SuiteOptions:
    """How to run a suite."""

    target_url: str | None = None
    token_env: str | None = None
    admin_token_env: str | None = None
    clock: Literal["virtual", "real", "auto"] | None = None
    jobs: int = 1
    fail_fast: bool = False
    seed: int | None = None
    """Seeds the clients' backoff jitter; recorded in the report (Toxiproxy ignores seeds)."""


@dataclass
class SuiteResult:
    """Every scenario's result and the run's environment."""

    started: dt.datetime
    results: list[ScenarioResult]
    environment: dict[str, str]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(r.status in ("passed", "skipped") for r in self.results)


Progress = Callable[[str, str], None]


async def run_suite(
    scenarios: Sequence[tuple[Path, m.Scenario]],
    options: SuiteOptions,
    progress: Progress | None = None,
) -> SuiteResult:
    """Run the scenarios; raise ``HarnessInfrastructureError`` if Toxiproxy cannot start."""
    started = dt.datetime.now(dt.UTC)
    clock_start = time.perf_counter()
    report = progress or (lambda name, status: None)
    results: dict[int, ScenarioResult] = {}
    stop = asyncio.Event()
    async with ToxiproxyServer() as toxiproxy, ToxiproxyClient(toxiproxy.url) as api:
        environment = {
            "toxiproxy": f"{toxiproxy.version} ({toxiproxy.url})",
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.release()}, {os.cpu_count()} cores",
            "target": options.target_url or "embedded reference server (one per scenario)",
        }
        gate = asyncio.Semaphore(max(1, options.jobs))

        async def one(index: int, path: Path, scenario: m.Scenario) -> None:
            async with gate:
                if stop.is_set():
                    results[index] = ScenarioResult(
                        scenario.name, str(path), "skipped", None, error="not run: --fail-fast"
                    )
                    return
                report(scenario.name, "running")
                result = await run_scenario(path, scenario, api, options, report)
                results[index] = result
                report(scenario.name, result.status)
                if options.fail_fast and result.status in ("failed", "error"):
                    stop.set()

        await asyncio.gather(*(one(i, p, s) for i, (p, s) in enumerate(scenarios)))
    ordered = [results[i] for i in range(len(scenarios))]
    return SuiteResult(started, ordered, environment, time.perf_counter() - clock_start)


async def run_scenario(
    path: Path,
    scenario: m.Scenario,
    api: ToxiproxyClient,
    options: SuiteOptions,
    progress: Progress | None = None,
) -> ScenarioResult:
    """Run one scenario against a fresh embedded target (or the external one)."""
    started = time.perf_counter()
    history = History()
    wanted = options.clock or scenario.clock
    target: Target
    result = ScenarioResult(scenario.name, str(path), "error", None, tags=scenario.tags)
    if options.target_url:
        if scenario.plant_fault or scenario.server_args:
            result.status = "skipped"
            result.error = "needs the embedded reference server (plant_fault or server_args)"
            return result
        try:
            target = ExternalTarget(options.target_url, options.token_env, options.admin_token_env)
        except HarnessInfrastructureError as exc:
            result.error = f"infrastructure: {exc}"
            return result
    else:
        args = ["--trusted-proxy", "127.0.0.1/32", *scenario.server_args]
        if scenario.plant_fault:
            args += ["--plant-fault", scenario.plant_fault]
        target = EmbeddedTarget(virtual_clock=wanted != "real", extra_args=tuple(args))
    faults = FaultLayer(api, history, scenario.name)
    try:
        if isinstance(target, EmbeddedTarget):
            await target.start()
        result.target = target.description
        clock: ClockMode = "virtual" if wanted != "real" and target.can_control_clock else "real"
        if wanted == "virtual" and clock != "virtual":
            result.status, result.error = "skipped", "the target offers no clock control"
            return result
        result.clock = clock
        upstream = _upstream(target.url)
        await faults.start(upstream)

        def on_step(step_path: str, kind: str) -> None:
            if progress is not None:
                progress(scenario.name, f"running step {step_path} ({kind})")

        run = ScenarioRun(scenario, target, faults, history, clock, options.seed, on_step)
        try:
            async with asyncio.timeout(scenario.timeout):
                steps = await run.run()
        except TimeoutError:
            steps = run.steps
            result.error = f"timed out after {scenario.timeout:g} s"
        result.steps = steps
        result.virtual_seconds = run.virtual_seconds
        if result.error:
            result.status = "error"
        elif any(s.status in ("failed", "error") for s in steps):
            result.status = "failed"
        else:
            result.status = "passed"
        missing = [r for r in scenario.requires if not _has(target, r)]
        if missing and result.status == "passed":
            result.status, result.error = "skipped", f"target lacks {', '.join(missing)}"
    except HarnessInfrastructureError as exc:
        result.status, result.error = "error", f"infrastructure: {exc}"
    finally:
        result.history = history
        result.seconds = time.perf_counter() - started
        with contextlib.suppress(HarnessInfrastructureError):
            await faults.close()
        await target.stop()
    return result


def _has(target: Target, capability: str) -> bool:
    if capability == "restart":
        return target.can_restart
    if capability == "virtual_clock":
        return target.can_control_clock
    if capability == "embedded":
        return isinstance(target, EmbeddedTarget)
    return True


def _upstream(url: str) -> str:
    """host:port of a ws(s) URL, with the scheme's default port when it names none."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    return f"{parts.hostname}:{port}"
