"""The runner: executes one scenario's steps against a target through its own proxy.

Data flows one way: validated ``Scenario`` -> steps executed here -> recorded ``History`` and
neutral driver records -> checkers -> ``ScenarioResult``. A step whose expectation fails stops
the scenario (the steps after it are reported as not run); a step the target cannot support
(a restart, clock control) is SKIPPED with the reason, and so are the expectations that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harness import checkers
from harness.checkers import Verdict
from harness.driver.base import DriverError, Outcome, Turn
from harness.driver.reference import ReferenceDriver
from harness.errors import HarnessInfrastructureError
from harness.faults.layer import FaultLayer, toxic_attributes
from harness.history import History
from harness.scenario import model as m
from harness.target import Target

StepStatus = Literal["passed", "failed", "skipped", "error", "not_run"]
ClockMode = Literal["virtual", "real"]

_STEP_KINDS = {cls: cls.__struct_config__.tag for cls in m.Step.__args__}


class StepFailedError(Exception):
    """An expectation of the step did not hold; carries what was expected and seen."""

    def __init__(self, expected: str, seen: str, evidence: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"expected {expected}; saw {seen}")
        self.expected, self.seen, self.evidence = expected, seen, dict(evidence or {})


class StepSkippedError(Exception):
    """The target cannot do what the step needs."""


@dataclass
class StepResult:
    """What happened at one step."""

    path: str
    kind: str
    status: StepStatus
    message: str = ""
    expected: str = ""
    seen: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    verdicts: list[Verdict] = field(default_factory=list)


@dataclass
class Snapshot:
    """The server's view of one client at a named point of the scenario."""

    context: Mapping[str, Any] | None
    turns: list[Turn] | None
    metrics: str | None


@dataclass
class ClientState:
    """The runner's bookkeeping for one simulated client."""

    spec: m.ClientSpec
    driver: ReferenceDriver
    sent: list[tuple[str, str]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    missed: list[tuple[int, int]] = field(default_factory=list)
    source_ip: str | None = None
    forwarded_for: str | None = None


class ScenarioRun:
    """One execution of one scenario."""

    def __init__(
        self,
        scenario: m.Scenario,
        target: Target,
        faults: FaultLayer,
        history: History,
        clock: ClockMode,
        seed: int | None = None,
        on_step: Callable[[str, str], None] | None = None,
    ) -> None:
        self.seed = seed
        self.on_step = on_step
        self.scenario = scenario
        self.target = target
        self.faults = faults
        self.history = history
        self.clock = clock
        self.steps: list[StepResult] = []
        self.clients: dict[str, ClientState] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.virtual_seconds = 0.0
        self._chat_counter = 0
        self._background: set[asyncio.Task[None]] = set()
        for spec in scenario.clients:
            self.clients[spec.name] = self._new_client(spec)

    # --- clients -------------------------------------------------------------------------

    def _new_client(self, spec: m.ClientSpec) -> ClientState:
        driver = ReferenceDriver(
            spec.name,
            self.target.url,
            self.target.token_for(spec.user or spec.name),
            self.history,
            seed=None if self.seed is None else hash((self.seed, spec.name)),
        )
        driver.set_route(connect_to=self._connect_to(spec), source_ip=None, forwarded_for=None)
        return ClientState(spec, driver)

    def _connect_to(self, spec: m.ClientSpec) -> tuple[str, int] | None:
        """The proxy's address for clients on the proxy route; None (the URL's host) otherwise."""
        return None if spec.route == "direct" else self.faults.address

    def _client(self, name: str | None) -> ClientState:
        if name is None:
            # The scenario's own clients: those a `parallel` step added never make it ambiguous.
            declared = self.scenario.clients
            if len(declared) != 1:
                choices = f"{len(declared)} clients to choose from"
                raise StepFailedError("a client name", choices)
            return self.clients[declared[0].name]
        return self.clients[name]

    # --- running -------------------------------------------------------------------------

    async def run(self) -> list[StepResult]:
        """Run every step; stop at the first failure or error."""
        try:
            await self._run_steps(self.scenario.steps, "", None)
        finally:
            for task in self._background:
                task.cancel()
            for client in self.clients.values():
                with contextlib.suppress(Exception):
                    await client.driver.client.drop()
        return self.steps

    async def _run_steps(
        self, steps: Sequence[m.Step], prefix: str, default_client: str | None
    ) -> bool:
        for index, step in enumerate(steps, start=1):
            path = f"{prefix}{index}"
            if not await self._run_step(step, path, default_client):
                return False
        return True

    async def _run_step(self, step: m.Step, path: str, default_client: str | None) -> bool:
        kind = _STEP_KINDS[type(step)]
        if self.on_step is not None:
            self.on_step(path, kind)
        result = StepResult(path, kind, "passed")
        started = time.perf_counter()
        op = self.history.invoke("runner", "step", path=path, step=kind)
        try:
            if isinstance(step, m.Repeat):
                ok = True
                for cycle in range(1, step.times + 1):
                    ok = await self._run_steps(step.steps, f"{path}.{cycle}.", default_client)
                    if not ok:
                        break
                result.message = f"{step.times} cycles" if ok else "stopped at a failed step"
                result.status = "passed" if ok else "failed"
            elif isinstance(step, m.Parallel):
                result.message = await self._parallel(step, path)
            else:
                result.message = await self._execute(step, default_client, result)
        except StepSkippedError as exc:
            result.status, result.message = "skipped", str(exc)
        except StepFailedError as exc:
            result.status, result.message = "failed", str(exc)
            result.expected, result.seen, result.evidence = exc.expected, exc.seen, exc.evidence
        except DriverError as exc:
            result.status, result.message = "failed", str(exc)
            result.seen = str(exc)
        except HarnessInfrastructureError:
            raise
        except Exception as exc:  # a harness bug must not hide as a pass or kill the suite
            result.status = "error"
            result.message = f"{type(exc).__name__}: {exc}"
            result.evidence = {"traceback": traceback.format_exc(limit=8)}
        result.seconds = time.perf_counter() - started
        self.history.complete(op, "ok", status=result.status)
        if not isinstance(step, m.Repeat | m.Parallel) or result.status != "passed":
            self.steps.append(result)
        return result.status in ("passed", "skipped")

    async def _parallel(self, step: m.Parallel, path: str) -> str:
        names = [f"{step.user_prefix}{i}" for i in range(1, step.clients + 1)]
        for name in names:
            spec = m.ClientSpec(name=name, user=name, route="proxy")
            self.clients[name] = self._new_client(spec)
        outcomes = await asyncio.gather(
            *(self._run_steps(step.steps, f"{path}.{name}.", name) for name in names),
            return_exceptions=True,
        )
        failed = [n for n, ok in zip(names, outcomes, strict=True) if ok is not True]
        if failed:
            raise StepFailedError(
                f"all {len(names)} parallel clients to pass",
                f"{len(failed)} failed, first {failed[0]}",
            )
        return f"{len(names)} clients, all passed"

    # --- steps ---------------------------------------------------------------------------

    async def _execute(self, step: m.Step, default: str | None, result: StepResult) -> str:
        client_name = getattr(step, "client", None) or default
        match step:
            case m.Connect():
                return await self._connect(self._client(client_name))
            case m.ReconnectFresh():
                return await self._connect(self._client(client_name))
            case m.Chat():
                return await self._chat(self._client(client_name), step)
            case m.Send():
                return await self._send(self._client(client_name), step)
            case m.Drop():
                return await self._drop(
                    self._client(client_name) if step.how in _CLIENT_DROPS else None, step
                )
            case m.Fault():
                return await self._fault(step)
            case m.Heal():
                await self.faults.heal()
                return "proxy enabled, every toxic removed"
            case m.Wait():
                return await self._wait(step.duration)
            case m.ChangeIp():
                return self._change_ip(self._client(client_name), step)
            case m.Resume():
                return await self._resume(self._client(client_name), step)
            case m.Snapshot():
                return await self._snapshot(self._client(client_name), step.name)
            case m.Expect():
                # Only latency and metrics: about the run, no client to pick.
                client = self._client(client_name) if step.needs_client else None
                return await self._expect(client, step, result)
        raise StepFailedError("a known step", type(step).__name__)

    async def _connect(self, client: ClientState) -> str:
        outcome = await client.driver.connect(timeout=10.0)
        client.outcomes.append(outcome)
        if outcome.kind != "new":
            raise StepFailedError("a new session", f"{outcome.kind} ({outcome.reason})")
        client.sent.clear()
        client.missed.clear()
        return "new session"

    async def _chat(self, client: ClientState, step: m.Chat) -> str:
        if step.expect == "queued" and client.driver.connected:
            raise StepFailedError("a disconnected client (messages to queue)", "it is connected")
        for _ in range(step.messages):
            self._chat_counter += 1
            n = self._chat_counter
            text = step.text or f"message {n}: what is {n} + {n * 2}"
            message_id = await client.driver.send_message(text)
            client.sent.append((message_id, text))
            if step.expect == "queued":
                continue
            try:
                reply = await client.driver.await_reply(message_id, step.timeout)
            except DriverError as exc:
                if step.expect == "timeout":
                    return f"no complete reply within {step.timeout:g} s, as expected ({exc})"
                raise
            if step.expect == "timeout":
                raise StepFailedError(
                    f"no complete reply within {step.timeout:g} s", f"a reply of {len(reply)} parts"
                )
            if not reply or not reply[-1].final:
                raise StepFailedError("a complete reply", f"{len(reply)} parts without a final one")
        if step.expect == "queued":
            return f"{step.messages} message(s) queued while disconnected"
        return f"{step.messages} message(s) answered"

    async def _send(self, client: ClientState, step: m.Send) -> str:
        frame: str | bytes = step.frame.encode() if step.binary else step.frame
        error, close = await client.driver.send_raw(
            frame, step.timeout, until_close=step.expect_close is not None
        )
        seen = f"error {error}, close {close}"
        if step.expect_error is not None and error != step.expect_error:
            raise StepFailedError(f"error {step.expect_error}", seen)
        if step.expect_close is not None and close != step.expect_close:
            raise StepFailedError(f"close code {step.expect_close}", seen)
        return seen

    async def _drop(self, client: ClientState | None, step: m.Drop) -> str:
        how = step.how
        if how in ("close", "reset"):
            assert client is not None
            await client.driver.disconnect("close" if how == "close" else "reset")
        elif how == "half_open":
            await self.faults.half_open()
        elif how == "proxy_down":
            await self.faults.down()
        elif how == "server_restart":
            if not self.target.can_restart:
                raise StepSkippedError("the target cannot be restarted by the harness")
            await self.target.restart()
        if how != "half_open":
            await self._until_server_noticed()
        if step.duration is not None:
            await self._wait(step.duration)
            if how == "proxy_down":
                await self.faults.up()
            elif how == "half_open":
                await self.faults.heal()
        return f"{how}" + (f" for {step.duration:g} s" if step.duration else "")

    async def _until_server_noticed(self, timeout: float = 5.0) -> None:
        """A gap starts when the server notices the drop; wait for that before time jumps."""
        connected = sum(1 for c in self.clients.values() if c.driver.connected)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = await self.target.metrics()
            value = checkers.metric_value(text, "ws_connections") if text else None
            if value is None:  # a target without that metric: allow it a moment
                await asyncio.sleep(0.05)
                return
            if value <= connected:
                return
            await asyncio.sleep(0.01)

    async def _fault(self, step: m.Fault) -> str:
        name = await self.faults.add(
            step.toxic,
            toxic_attributes(step.toxic, step),
            stream=step.stream,
            toxicity=step.toxicity,
        )
        if step.duration is not None:
            task = asyncio.create_task(self._remove_later(name, step.duration))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return f"{step.toxic} on {step.stream} (toxicity {step.toxicity:g})"

    async def _remove_later(self, name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.faults.remove(name)

    async def _wait(self, seconds: float) -> str:
        if self.clock == "virtual":
            await self._until_server_noticed()
            await self.target.advance_clock(seconds)
            self.virtual_seconds += seconds
            self.history.event("clock", "advance", seconds=float(seconds))
            return f"{seconds:g} s of virtual time"
        await asyncio.sleep(seconds)
        return f"{seconds:g} s of real time"

    def _change_ip(self, client: ClientState, step: m.ChangeIp) -> str:
        if step.source is not None:
            if client.spec.route != "direct":
                raise StepFailedError(
                    "a client on the direct route (through the proxy the server sees the proxy)",
                    f"client {client.spec.name} on route {client.spec.route}",
                )
            client.source_ip = step.source
        if step.forwarded_for is not None:
            client.forwarded_for = step.forwarded_for
        client.driver.set_route(
            connect_to=self._connect_to(client.spec),
            source_ip=client.source_ip,
            forwarded_for=client.forwarded_for,
        )
        self.history.event(
            client.spec.name, "change_ip", source=step.source, forwarded_for=step.forwarded_for
        )
        return f"next connection from {step.source or 'X-Forwarded-For ' + str(step.forwarded_for)}"

    async def _resume(self, client: ClientState, step: m.Resume) -> str:
        other = None
        if step.session_of is not None:
            other = self.clients[step.session_of].driver
            taken_from = other.client.protocol.last_seq
            client.sent = list(self.clients[step.session_of].sent)
            if taken_from:  # those positions went to the other connection, not this one
                client.missed.append((1, taken_from))
        try:
            outcome = await client.driver.resume(
                timeout=step.timeout,
                retry=step.expect != "unreachable",
                token=step.token,
                session_of=other,
            )
        except DriverError as exc:
            if step.expect == "unreachable":
                return f"unreachable, as expected: {exc}"
            raise
        if step.expect == "unreachable":
            raise StepFailedError("the target to be unreachable", f"resume {outcome.kind}")
        client.outcomes.append(outcome)
        if outcome.missed:
            client.missed.append(outcome.missed)
        seen = outcome.kind + (f" ({outcome.reason})" if outcome.reason else "")
        if outcome.warnings:
            seen += f", warnings {', '.join(outcome.warnings)}"
        if step.expect != "any" and outcome.kind != step.expect:
            raise StepFailedError(
                f"resume {step.expect}" + (f" ({step.reason})" if step.reason else ""), seen
            )
        if step.reason is not None and outcome.reason != step.reason:
            raise StepFailedError(f"rejection reason {step.reason}", seen)
        if step.warnings is not None and sorted(step.warnings) != sorted(outcome.warnings):
            raise StepFailedError(f"warnings {list(step.warnings)}", seen)
        consistent = checkers.outcome_consistent(outcome, client.driver.terms)
        if not consistent.passed:
            raise StepFailedError("an outcome the advertised windows allow", consistent.message)
        if outcome.gap_s is not None:
            seen += f" after a {outcome.gap_s:g} s gap"
        return seen

    async def _snapshot(self, client: ClientState, name: str, *, quiet: bool = False) -> str:
        try:
            context = await client.driver.fetch_context(timeout=5.0)
            turns = await client.driver.fetch_history(timeout=5.0)
        except DriverError:
            if quiet:
                return "skipped"
            raise
        self.snapshots[name] = Snapshot(context, turns, await self.target.metrics())
        self.snapshots[f"{client.spec.name}:{name}"] = self.snapshots[name]
        return f"{name}: {len(turns)} turns, context with {len(checkers.flatten(context))} values"

    # --- expectations --------------------------------------------------------------------

    async def _expect(self, client: ClientState | None, step: m.Expect, result: StepResult) -> str:
        verdicts: list[Verdict] = []
        if step.delivery is not None:
            assert client is not None
            d = step.delivery
            verdicts.append(
                checkers.delivery(
                    client.driver.deliveries,
                    client.driver.anomalies,
                    client.missed,
                    no_loss=d.no_loss,
                    no_duplicates=d.no_duplicates,
                    order=d.order,
                )
            )
        if step.history is not None:
            assert client is not None
            h = step.history
            turns = await client.driver.fetch_history(timeout=5.0)
            verdicts.append(
                checkers.history(
                    turns,
                    client.sent,
                    count=h.count,
                    order=h.order,
                    no_loss=h.no_loss,
                    no_duplicates=h.no_duplicates,
                    contains=h.contains,
                )
            )
            verdicts.append(
                checkers.delivery(client.driver.deliveries, client.driver.anomalies, client.missed)
            )
        if step.context is not None:
            assert client is not None
            verdicts.append(await self._expect_context(client, step.context))
        if step.resume is not None:
            assert client is not None
            if step.resume.notice is not None and client.driver.connected:
                # A notice follows the resume's replay: a round trip makes sure it has arrived.
                await client.driver.fetch_context(timeout=5.0)
            verdicts.append(await self._expect_resume(client, step.resume))
        for latency in step.latency:
            limits = {
                name: value
                for name in ("p50", "p95", "p99", "max", "mean")
                if (value := getattr(latency, name, None)) is not None
            }
            verdicts.append(
                checkers.latency(
                    latency.operation, self.history.durations(latency.operation), limits
                )
            )
        for metric in step.metrics:
            verdicts.append(await self._expect_metric(metric))
        failed = [v for v in verdicts if not v.passed]
        if step.must_fail:  # rename, so summaries do not count these as the target's checks
            verdicts = [
                Verdict(f"{v.check} (must fail)", v.passed, v.message, v.evidence) for v in verdicts
            ]
        result.verdicts = verdicts
        if step.must_fail:
            if not failed:
                raise StepFailedError(
                    "the checks to catch the planted fault",
                    "every check passed: " + "; ".join(v.message for v in verdicts),
                )
            return "caught, as it must be: " + "; ".join(v.message for v in failed)
        if failed:
            first = failed[0]
            raise StepFailedError(f"{first.check} to hold", first.message, first.evidence)
        return "; ".join(v.message for v in verdicts)

    async def _expect_context(self, client: ClientState, expect: m.ContextExpect) -> Verdict:
        name = expect.equals or expect.against or "before_drop"
        snapshot = self.snapshots.get(f"{client.spec.name}:{name}") or self.snapshots.get(name)
        if snapshot is None or snapshot.context is None:
            return Verdict("context", False, f"no snapshot named {name!r} to compare with", {})
        now = await client.driver.fetch_context(timeout=5.0)
        return checkers.context(snapshot.context, now, preserved=expect.preserved, keys=expect.keys)

    async def _expect_resume(self, client: ClientState, expect: m.ResumeExpect) -> Verdict:
        if expect.closed is not None:
            await asyncio.sleep(0.05)  # the closing frame may still be on its way
            if client.driver.closed_reason != expect.closed:
                return Verdict(
                    "resume",
                    False,
                    f"connection closed with {client.driver.closed_reason}, "
                    f"expected {expect.closed}",
                    {},
                )
            if expect.outcome is None and expect.warnings is None and expect.notice is None:
                return Verdict("resume", True, f"connection closed with {expect.closed}", {})
        resumes = [o for o in client.outcomes if o.kind != "new"]
        if not resumes:
            return Verdict("resume", False, "no resume happened", {})
        last = resumes[-1]
        if expect.outcome not in (None, "any") and last.kind != expect.outcome:
            return Verdict(
                "resume", False, f"last resume was {last.kind}, expected {expect.outcome}", {}
            )
        if expect.warnings is not None and sorted(expect.warnings) != sorted(last.warnings):
            return Verdict(
                "resume",
                False,
                f"warnings {list(last.warnings)}, expected {list(expect.warnings)}",
                {},
            )
        notices = client.driver.security_notices
        if expect.notice is not None and bool(notices) != expect.notice:
            return Verdict(
                "resume",
                False,
                f"{len(notices)} security notices, expected notice={expect.notice}",
                {},
            )
        return Verdict(
            "resume", True, f"last resume {last.kind}; {len(notices)} security notice(s)", {}
        )

    async def _expect_metric(self, expect: m.MetricExpect) -> Verdict:
        if expect.between is not None:
            first_name, last_name = expect.between
            first, last = self.snapshots.get(first_name), self.snapshots.get(last_name)
            texts = [s.metrics if s else None for s in (first, last)]
        else:
            texts = [await self.target.metrics()]
        if any(t is None for t in texts):
            raise StepSkippedError(f"the target exposes no metrics for {expect.name}")
        values = [checkers.metric_value(t or "", expect.name) for t in texts]
        if any(v is None for v in values):
            return Verdict("metrics", False, f"metric {expect.name} not found", {})
        if expect.growth is not None and len(values) == 2:
            return checkers.metric_growth(
                expect.name, values[0] or 0.0, values[1] or 0.0, expect.growth
            )
        value = values[-1] or 0.0
        if expect.value is not None and not expect.value.holds(value):
            return Verdict(
                "metrics", False, f"{expect.name} is {value:g}, needed {expect.value}", {}
            )
        return Verdict("metrics", True, f"{expect.name} = {value:g}", {})


_CLIENT_DROPS = ("close", "reset")
