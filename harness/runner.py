"""The runner: executes one scenario's steps, records everything, and has each step judged.

For each step the runner acts (calls the client's ``Driver``, the target, the fault layer,
the clock) and records every call and its result in the ``History``; then
``harness.judge`` decides, from the history alone, whether the step held. A step that did
not hold stops the scenario (the steps after it do not run). The runner holds each client's
``Driver`` and nothing else of it: it knows no protocol.

Whether the scenario can run at all (its clock, the capabilities it needs) was decided by
``harness.plan`` before this starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from harness import checkers
from harness.checkers import Verdict
from harness.driver.base import ClientConfig, Driver, DriverError, DriverFactory, Route
from harness.errors import HarnessInfrastructureError
from harness.faults.base import Faults
from harness.faults.layer import toxic_attributes
from harness.herd import Herd, HerdLike, gate_key
from harness.history import (
    AdvanceClock,
    AwaitHerd,
    AwaitReply,
    Body,
    Closed,
    ContextValue,
    Disconnect,
    Done,
    Failure,
    FetchContext,
    FetchHistory,
    FetchMetrics,
    History,
    HistoryPage,
    InspectStore,
    MetricsValue,
    NodeAction,
    Observation,
    Outcome,
    RawAnswer,
    RealWait,
    Replied,
    Resend,
    Restart,
    Resume,
    Retry,
    RouteChanged,
    SendMessage,
    SendRaw,
    Sent,
    SnapshotTaken,
    StepEnd,
    StepStart,
    StoredRows,
)
from harness.history import Connect as ConnectOp
from harness.judge import StepSlice, judge
from harness.opindex import OpIndex
from harness.plan import ClockMode
from harness.results import StepResult
from harness.scenario import model as m
from harness.targets.base import InspectsStore, Target

T = TypeVar("T")

_STEP_KINDS = {cls: str(cls.__struct_config__.tag) for cls in m.Step.__args__}


def timeout_factor() -> float:
    """``HARNESS_TIMEOUT_FACTOR`` scales every wait of the runner (a slow CI machine)."""
    try:
        return max(0.1, float(os.environ.get("HARNESS_TIMEOUT_FACTOR", "1")))
    except ValueError:
        return 1.0


@dataclass(frozen=True)
class Waits:
    """Every bound the runner puts on a wait of its own, in seconds (scenario steps bring
    theirs); each is multiplied by ``timeout_factor()``."""

    connect: float = 10.0
    """A connect or reconnect step, retries included."""
    fetch: float = 5.0
    """One read of the history, the context or the metrics."""
    settle: float = 5.0
    """For the target to notice dropped connections before a gap starts."""
    closing: float = 0.05
    """For a closing frame still on its way before a close reason is judged."""
    backoff_base: float = 0.05
    backoff_cap: float = 1.0
    fault_probe: float = 3.0
    """For Toxiproxy to answer when a step failed, to know whom to blame. Generous: under a
    herd of connections its API answers slowly, and a slow answer is not a dead one."""

    def scaled(self, factor: float) -> Waits:
        return Waits(**{k: v * factor for k, v in self.__dict__.items()})


class StepFailedError(Exception):
    """The scenario cannot go on as written (a step names no client where one is needed)."""


class FaultLayerDownError(HarnessInfrastructureError):
    """A step failed while the fault layer did not answer: not the target's failure."""


class Spread(Protocol):
    """Runs a large ``parallel`` group in worker processes (``harness.workers.Spread``)."""

    async def __call__(
        self, run: ScenarioRun, step: m.Parallel, path: str, names: list[str]
    ) -> tuple[dict[str, bool], str] | None:
        """Whether each client passed, and how the group was spread; None when it stays in
        this process."""
        ...


@dataclass
class ClientState:
    """The runner's handle on one simulated client."""

    spec: m.ClientSpec
    driver: Driver
    route: Route = field(default_factory=Route)
    random: random.Random = field(default_factory=random.Random)
    node: int = 0
    """On a cluster target, the node (0-based) its connections go to."""


class ScenarioRun:
    """One execution of one scenario."""

    def __init__(
        self,
        scenario: m.Scenario,
        *,
        target: Target,
        faults: Faults,
        history: History,
        driver: DriverFactory,
        clock: ClockMode,
        seed: int | None = None,
        waits: Waits | None = None,
        on_step: Callable[[str, str], None] | None = None,
        spread: Spread | None = None,
    ) -> None:
        self.scenario = scenario
        self.target = target
        self.faults = faults
        self.history = history
        self.index = OpIndex(history)
        """Each client's operations, so judging a herd's steps is not quadratic."""
        self.factory = driver
        self.clock = clock
        self.seed = seed
        self.waits = waits or Waits().scaled(timeout_factor())
        self.on_step = on_step
        self.spread = spread
        self.steps: list[StepResult] = []
        self.clients: dict[str, ClientState] = {}
        self.virtual_seconds = 0.0
        self.chat_counter = 0
        self._timers: asyncio.TaskGroup | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._herds: dict[str, tuple[HerdLike, str]] = {}
        """Each client of a running `parallel` group: its herd and the group's path."""
        for spec in scenario.clients:
            self.clients[spec.name] = self._new_client(spec)

    # --- clients -------------------------------------------------------------------------

    def _new_client(self, spec: m.ClientSpec) -> ClientState:
        route = Route(connect_to=self._connect_to(spec))

        def observe(observation: Observation, name: str = spec.name) -> None:
            self.history.event(name, observation)

        config = ClientConfig(
            name=spec.name,
            url=self.target.url,
            credential=self.target.credential_for(spec.user or spec.name),
            route=route,
        )
        # A string seed: random.Random hashes it the same in every process (hash() does not).
        seed = None if self.seed is None else f"{self.seed}:{spec.name}"
        return ClientState(spec, self.factory(config, observe), route, random.Random(seed))

    def _connect_to(self, spec: m.ClientSpec) -> tuple[str, int] | None:
        """The proxy's address for clients on the proxy route; None (the URL's host) otherwise."""
        return None if spec.route == "direct" else self.faults.address

    def _client(self, name: str | None) -> ClientState:
        if name is None:
            # The scenario's own clients: those a `parallel` step added never make it ambiguous.
            declared = self.scenario.clients
            if len(declared) != 1:
                raise StepFailedError(f"the step names no client, and there are {len(declared)}")
            return self.clients[declared[0].name]
        return self.clients[name]

    # --- recording -----------------------------------------------------------------------

    async def _call(
        self,
        process: str,
        request: Body,
        action: Awaitable[T],
        result: Callable[[T], Body],
        *,
        unknown_on_error: bool = False,
    ) -> T:
        """Run ``action`` as one recorded operation: invoke, then ok (``result`` of its value),
        fail (a ``DriverError``: re-raised) or info (cut short: outcome unknown)."""
        op = self.history.invoke(process, request)
        try:
            value = await action
        except DriverError as exc:
            phase: Literal["fail", "info"] = "info" if unknown_on_error else "fail"
            self.history.complete(op, phase, Failure(error=str(exc)))
            raise
        except HarnessInfrastructureError as exc:
            self.history.complete(op, "fail", Failure(error=str(exc), infrastructure=True))
            raise
        except BaseException as exc:
            self.history.complete(op, "info", Failure(error=f"{type(exc).__name__}: {exc}"))
            raise
        self.history.complete(op, "ok", result(value))
        return value

    # --- running -------------------------------------------------------------------------

    async def run(self) -> list[StepResult]:
        """Run every step; stop at the first that does not hold."""
        try:
            async with asyncio.TaskGroup() as group:
                self._timers = group
                try:
                    if "metrics" in self.target.capabilities:
                        await self._metrics()  # the baseline for `growth` without `between`
                    await self._run_steps(self.scenario.steps, "", None)
                finally:
                    for task in self._pending:  # a toxic's removal that is no longer needed
                        task.cancel()
        except* HarnessInfrastructureError as group:
            raise group.exceptions[0] from None
        finally:
            for client in self.clients.values():
                with contextlib.suppress(Exception):
                    await client.driver.aclose()
            self.history.close_unfinished("the scenario ended before it completed")
        return self.steps

    async def _run_steps(
        self, steps: Sequence[m.Step], prefix: str, default_client: str | None
    ) -> bool:
        for index, step in enumerate(steps, start=1):
            if not await self._run_step(step, f"{prefix}{index}", default_client):
                return False
        return True

    async def _run_step(self, step: m.Step, path: str, default_client: str | None) -> bool:
        kind = _STEP_KINDS[type(step)]
        if self.on_step is not None:
            self.on_step(path, kind)
        client_name = getattr(step, "client", None) or default_client
        if isinstance(step, m.Expect) and not step.needs_client:
            client_name = None  # latency and metrics are about the run
        elif client_name is None and hasattr(step, "client"):
            declared = self.scenario.clients
            client_name = declared[0].name if len(declared) == 1 else None
        result = StepResult(path=path, kind=kind, status="passed", client=client_name)
        started = time.perf_counter()
        op = self.history.invoke("runner", StepStart(path=path, kind=kind, client=client_name))
        first = len(self.history.ops)
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
                result.message, ok = await self._parallel(step, path)
                result.status = "passed" if ok else "failed"
            elif isinstance(step, m.Once):
                result.message = await self._await_herd(step, path, client_name)
                self._judge(step, result, first)
            else:
                result.message = await self._act(step, client_name)
                self._judge(step, result, first)
        except StepFailedError as exc:
            result.status, result.message = "failed", str(exc)
        except DriverError as exc:
            await self._blame(exc)
            # The operation's failure is in the history: the judge reads it from there.
            self._judge(step, result, first, fallback=str(exc))
        except HarnessInfrastructureError:
            self.history.complete(op, "info", StepEnd(status="error"))
            raise
        except Exception as exc:  # a harness bug must not hide as a pass or kill the suite
            result.status = "error"
            result.message = f"{type(exc).__name__}: {exc}"
            result.evidence = {"traceback": traceback.format_exc(limit=8)}
        result.seconds = time.perf_counter() - started
        self.history.complete(op, "ok", StepEnd(status=result.status))
        if not isinstance(step, m.Repeat | m.Parallel) or result.status != "passed":
            self.steps.append(result)
        return result.status == "passed"

    def _judge(self, step: m.Step, result: StepResult, first: int, *, fallback: str = "") -> None:
        client = self.clients.get(result.client or "")
        verdicts = judge(
            step,
            StepSlice(
                ops=self.history.ops,
                first=first,
                client=result.client,
                positions=(client.driver if client else self._any_driver()).info.positions,
                index=self.index,
            ),
        )
        apply_verdicts(result, verdicts, fallback=fallback)

    def _any_driver(self) -> Driver:
        return next(iter(self.clients.values())).driver

    async def _blame(self, error: DriverError) -> None:
        """A driver failed: if the fault layer is not answering, that is why, not the target."""
        if not await self.faults.healthy(self.waits.fault_probe):
            raise FaultLayerDownError(
                f"the fault layer (Toxiproxy) did not answer while a step failed ({error})"
            )

    async def _parallel(self, step: m.Parallel, path: str) -> tuple[str, bool]:
        names = [f"{step.user_prefix}{i}" for i in range(1, step.clients + 1)]
        spread = None if self.spread is None else await self.spread(self, step, path, names)
        if spread is None:
            spread = await self.run_group(step, path, names), ""
        passed, how = spread
        where = f" ({how})" if how else ""
        failed = [n for n in names if not passed.get(n)]
        if failed:
            return f"{len(failed)} of {len(names)} clients failed, first {failed[0]}{where}", False
        return f"{len(names)} clients, all passed{where}", True

    async def run_group(
        self, step: m.Parallel, path: str, names: Sequence[str], herd: HerdLike | None = None
    ) -> dict[str, bool]:
        """Run the group's steps for each of ``names`` at once (all of the group, or a worker's
        share of it); ``herd`` holds the gates of its `once` steps (without it, a herd of
        these clients, whose `once` steps this run runs)."""
        for name in names:
            spec = m.ClientSpec(name=name, user=name, route="proxy")
            self.clients[name] = self._new_client(spec)
        passed: dict[str, bool] = {}
        try:
            async with asyncio.TaskGroup() as group:
                gates = herd if herd is not None else Herd(names, group, self.run_once)

                async def one(name: str) -> None:
                    try:
                        passed[name] = await self._run_steps(step.steps, f"{path}.{name}.", name)
                    finally:
                        gates.leave(name)

                for name in names:
                    self._herds[name] = (gates, path)
                    group.create_task(one(name))
        except* HarnessInfrastructureError as errors:
            raise errors.exceptions[0] from None
        finally:
            for name in names:
                self._herds.pop(name, None)
        return passed

    async def _await_herd(self, step: m.Once, path: str, client_name: str | None) -> str:
        """Wait at the `once` step's gate until the group's steps of it ran (or did not)."""
        if client_name is None or client_name not in self._herds:
            raise StepFailedError("`once` runs only inside `parallel`")
        herd, group_path = self._herds[client_name]
        key = gate_key(group_path, client_name, path)
        op = self.history.invoke(client_name, AwaitHerd(gate=key))
        try:
            outcome = await herd.arrive(key, step, client_name)
        except BaseException as exc:
            self.history.complete(op, "info", Failure(error=f"{type(exc).__name__}: {exc}"))
            raise
        if outcome is not None:
            self.history.complete(op, "fail", Failure(error=outcome))
            return outcome
        self.history.complete(op, "ok", Done())
        return f"the group's steps of `once` ran and held ({key})"

    async def run_once(self, key: str, step: m.Once) -> str | None:
        """Run the steps of a `once` gate, one time, for no client; None when they held."""
        first = len(self.steps)
        if await self._run_steps(step.steps, f"{key}.", None):
            return None
        failed = next((r for r in self.steps[first:] if r.status != "passed"), None)
        where = f" at step {failed.path}: {failed.message}" if failed is not None else ""
        return f"the steps of `once` did not hold{where}"

    # --- acting --------------------------------------------------------------------------

    async def _act(self, step: m.Step, client_name: str | None) -> str:
        match step:
            case m.Connect(node=int() as node):
                attaching = self._client(client_name)
                where = self._next_node(attaching, node)
                return await self._connect(attaching) + where
            case m.Connect() | m.ReconnectFresh():
                return await self._connect(self._client(client_name))
            case m.Chat():
                return await self._chat(self._client(client_name), step)
            case m.Send():
                return await self._send(self._client(client_name), step)
            case m.Drop():
                client = self._client(client_name) if step.how in _CLIENT_DROPS else None
                return await self._drop(client, step)
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
            case m.Race():
                return await self._race(step)
            case m.KillNode() | m.StartNode():
                return await self._node_action(step)
            case m.StoreLink():
                return await self._store_link(step)
            case m.Snapshot():
                return await self._snapshot(self._client(client_name), step.name)
            case m.Expect():
                return await self._gather_for_expect(step, client_name)
        raise StepFailedError(f"no runner for step {type(step).__name__}")

    async def _attach(
        self,
        client: ClientState,
        request: Callable[[int], Body],
        attempt: Callable[[float], Awaitable[Outcome]],
        timeout: float,
        *,
        retry: bool,
    ) -> Outcome:
        """Connect or resume: one recorded operation per attempt; while ``retry``, back off
        exponentially with equal jitter after a failure or an answer that says when to retry,
        until ``timeout``."""
        deadline = time.monotonic() + timeout
        name = client.spec.name
        for number in range(1, 10_000):
            left = max(0.05, deadline - time.monotonic())
            try:
                outcome = await self._call(name, request(number), attempt(left), lambda o: o)
            except DriverError as exc:
                delay = self._backoff(client, number, exc.retry_after)
                if not retry or time.monotonic() + delay >= deadline:
                    raise
                kind = "connect" if isinstance(request(number), ConnectOp) else "resume"
                self.history.event(name, Retry(of=kind, attempt=number, delay=delay))
                await asyncio.sleep(delay)
                continue
            if outcome.retry_after is None or not retry:
                return outcome
            delay = self._backoff(client, number, outcome.retry_after)
            if time.monotonic() + delay >= deadline:
                return outcome
            kind = "connect" if isinstance(request(number), ConnectOp) else "resume"
            self.history.event(name, Retry(of=kind, attempt=number, delay=delay))
            await asyncio.sleep(delay)
        raise DriverError(f"gave up after {number} attempts")

    def _backoff(self, client: ClientState, attempt: int, floor: float | None) -> float:
        """Equal jitter (the reference protocol's §14.1, good manners towards any server):
        a uniform draw in [d/2, d] for d = min(cap, base * 2**(attempt-1)), never a retry at
        once, never below the wait the target asked for."""
        ceiling = min(self.waits.backoff_cap, self.waits.backoff_base * 2 ** (attempt - 1))
        return max(floor or 0.0, client.random.uniform(ceiling / 2, ceiling))

    async def _connect(self, client: ClientState) -> str:
        outcome = await self._attach(
            client,
            lambda n: ConnectOp(attempt=n),
            client.driver.connect,
            self.waits.connect,
            retry=True,
        )
        return f"connect: {outcome.kind}"

    async def _chat(self, client: ClientState, step: m.Chat) -> str:
        name = client.spec.name
        driver = client.driver

        def sent(message_id: str) -> Sent:
            return Sent(message_id=message_id, connected=driver.connected)

        for _ in range(step.messages):
            self.chat_counter += 1
            n = self.chat_counter
            text = step.text or f"message {n}: what is {n} + {n * 2}"
            message_id = await self._call(
                name, SendMessage(text=text), driver.send_message(text), sent
            )
            if step.expect == "queued":
                continue
            try:
                await self._call(
                    name,
                    AwaitReply(message_id=message_id, timeout=float(step.timeout)),
                    driver.await_reply(message_id, float(step.timeout)),
                    lambda parts: Replied(parts=parts),
                )
            except DriverError:
                if step.expect == "timeout":
                    return "no complete reply in time"
                raise
            if step.resend is not None:
                renumber = step.resend == "new_seq"
                await self._call(
                    name,
                    Resend(message_id=message_id, renumber=renumber),
                    driver.resend(message_id, renumber=renumber, timeout=float(step.timeout)),
                    lambda _: Done(),
                )
        return f"{step.messages} message(s)"

    async def _send(self, client: ClientState, step: m.Send) -> str:
        frame: str | bytes = step.frame.encode() if step.binary else step.frame
        until_close = step.expect_close is not None
        answer = await self._call(
            client.spec.name,
            SendRaw(size=len(frame), binary=step.binary, until_close=until_close),
            client.driver.send_raw(frame, float(step.timeout), until_close=until_close),
            lambda a: RawAnswer(error=a.error, close=a.close),
        )
        return f"error {answer.error}, close {answer.close}"

    async def _drop(self, client: ClientState | None, step: m.Drop) -> str:
        how = step.how
        if how in ("close", "reset"):
            assert client is not None
            mode: Literal["close", "reset"] = "close" if how == "close" else "reset"
            await self._call(
                client.spec.name,
                Disconnect(how=mode),
                client.driver.disconnect(mode),
                lambda _: Done(),
            )
        elif how == "half_open":
            await self.faults.half_open()
        elif how == "proxy_down":
            await self.faults.down()
        elif how == "server_restart":
            await self._call("target", Restart(), self.target.restart(), lambda _: Done())
        if how != "half_open":
            await self._settle()
        if step.duration is not None:
            await self._wait(step.duration)
            if how == "proxy_down":
                await self.faults.up()
            elif how == "half_open":
                await self.faults.heal()
        return f"{how}" + (f" for {step.duration:g} s" if step.duration else "")

    async def _node_action(self, step: m.KillNode | m.StartNode) -> str:
        """Kill one node of a cluster target, or start it again."""
        action: Literal["kill", "start"] = "kill" if isinstance(step, m.KillNode) else "start"
        call = getattr(self.target, f"{action}_node", None)
        if call is None:
            raise StepFailedError("the target is not a cluster of nodes")
        await self._call(
            "target", NodeAction(action=action, node=step.node), call(step.node), lambda _: Done()
        )
        if action == "kill":
            await self._settle()
        return f"node {step.node} " + ("killed" if action == "kill" else "started")

    async def _store_link(self, step: m.StoreLink) -> str:
        """Break or heal the cluster's link to Redis; heal it after ``duration``."""
        store_link = getattr(self.faults, "store_link", None)
        if store_link is None:
            raise StepFailedError("the target has no store link (not a cluster of nodes)")
        latency = None if step.latency is None else float(step.latency)
        said: str = await store_link(step.how, latency)
        if step.duration is not None and step.how != "heal":
            await self._wait(float(step.duration))
            await store_link("heal", None)
            said += f" for {float(step.duration):g} s"
        return said

    async def _settle(self) -> None:
        """A gap starts when the server notices the drop; wait for that before time jumps."""
        connected = sum(1 for c in self.clients.values() if c.driver.connected)
        await self.target.settle(connected, self.waits.settle)

    async def _fault(self, step: m.Fault) -> str:
        name = await self.faults.add(
            step.toxic,
            toxic_attributes(step.toxic, step),
            stream=step.stream,
            toxicity=step.toxicity,
        )
        if step.duration is not None:
            assert self._timers is not None
            task = self._timers.create_task(self._remove_later(name, float(step.duration)))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return f"{step.toxic} on {step.stream} (toxicity {step.toxicity:g})"

    async def _remove_later(self, name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.faults.remove(name)

    async def _wait(self, seconds: float) -> str:
        if self.clock == "virtual":
            await self._settle()
            await self._call(
                "clock",
                AdvanceClock(seconds=float(seconds)),
                self.target.advance_clock(seconds),
                lambda _: Done(),
            )
            self.virtual_seconds += seconds
            return f"{seconds:g} s of virtual time"
        await self._call(
            "clock", RealWait(seconds=float(seconds)), asyncio.sleep(seconds), lambda _: Done()
        )
        return f"{seconds:g} s of real time"

    def _change_ip(self, client: ClientState, step: m.ChangeIp) -> str:
        if step.source is not None:
            if client.spec.route != "direct":
                raise StepFailedError(
                    f"change_ip with `source` needs a client on the direct route (through the "
                    f"proxy the server sees the proxy); {client.spec.name} is on "
                    f"{client.spec.route}"
                )
            client.route = Route(
                connect_to=client.route.connect_to,
                source_ip=step.source,
                forwarded_for=client.route.forwarded_for,
            )
        if step.forwarded_for is not None:
            client.route = Route(
                connect_to=client.route.connect_to,
                source_ip=client.route.source_ip,
                forwarded_for=step.forwarded_for,
            )
        client.driver.set_route(client.route)
        self.history.event(
            client.spec.name, RouteChanged(source=step.source, forwarded_for=step.forwarded_for)
        )
        return f"next connection from {step.source or 'X-Forwarded-For ' + str(step.forwarded_for)}"

    def _next_node(self, client: ClientState, node: int | None = None) -> str:
        """On a cluster target, send the client's connections to node ``node`` (1-based), or
        by default to the next node (node k+1 after node k), so that every resume lands on
        another node than the previous connection's. Returns what the step says about it."""
        node_address = getattr(self.faults, "node_address", None)
        nodes: int = getattr(self.faults, "nodes", 1)
        if node_address is None or nodes < 2 or client.spec.route == "direct":
            if node is not None and node > 1:
                raise StepFailedError(f"node {node}: the target is not a cluster of {node} nodes")
            return ""
        if node is not None and node > nodes:
            raise StepFailedError(f"node {node}: the cluster has {nodes} nodes")
        client.node = node - 1 if node is not None else (client.node + 1) % nodes
        client.route = Route(
            connect_to=node_address(client.node),
            source_ip=client.route.source_ip,
            forwarded_for=client.route.forwarded_for,
        )
        client.driver.set_route(client.route)
        self.history.event(
            client.spec.name,
            RouteChanged(source=client.route.source_ip, forwarded_for=None, node=client.node + 1),
        )
        return f" on node {client.node + 1}"

    async def _resume(self, client: ClientState, step: m.Resume) -> str:
        other = self.clients[step.session_of].driver if step.session_of is not None else None
        driver = client.driver
        where = self._next_node(client, step.node)

        def attempt(left: float) -> Awaitable[Outcome]:
            return driver.resume(left, token=step.token, session_of=other)

        outcome = await self._attach(
            client,
            lambda n: Resume(attempt=n, token=step.token, session_of=step.session_of),
            attempt,
            float(step.timeout),
            retry=step.expect != "unreachable",
        )
        return f"resume: {outcome.kind}{where}"

    async def _race(self, step: m.Race) -> str:
        """Resumes of one session from every racer at the same instant, one attempt each
        (§7.5); then the racer that holds the session, if one does, chats."""
        first = len(self.history.ops)
        holder = self.clients[step.session_of].driver
        racers = [self.clients[name] for name in step.clients]
        nodes: int = getattr(self.faults, "nodes", 1)
        for racer in racers:  # a connection left from before would first have to close
            if racer.driver.connected:
                await self._call(
                    racer.spec.name,
                    Disconnect(how="reset"),
                    racer.driver.disconnect("reset"),
                    lambda _: Done(),
                )
        for i, racer in enumerate(racers):
            if step.nodes is not None:
                self._next_node(racer, step.nodes[i])
            elif nodes > 1:
                self._next_node(racer, i % nodes + 1)
        timeout = float(step.timeout)

        async def one(racer: ClientState) -> None:
            with contextlib.suppress(DriverError):  # the failure is in the history
                await self._call(
                    racer.spec.name,
                    Resume(attempt=1, session_of=step.session_of),
                    racer.driver.resume(timeout, session_of=holder),
                    lambda o: o,
                )

        try:
            async with asyncio.TaskGroup() as group:
                for racer in racers:
                    group.create_task(one(racer))
        except* HarnessInfrastructureError as errors:
            raise errors.exceptions[0] from None
        # A resume accepted first and then taken over is closed a moment later: wait (bounded)
        # until at most one racer is still connected, then for a closing frame on its way.
        for _ in range(max(1, round(self.waits.settle / 0.01))):  # drivers offer no event
            if sum(r.driver.connected for r in racers) <= 1:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(self.waits.closing)
        answers = checkers.race_answers(self.history.ops[first:], step.clients)
        holders = [a for a in answers if a.holds]
        if len(holders) == 1 and step.messages:
            winner = self.clients[holders[0].client]
            try:
                await self._chat(winner, m.Chat(messages=step.messages, timeout=step.timeout))
            except DriverError:
                # A resume decided after the winner's may have ended the session (revoked it,
                # §7.5): the target then closes the winner's connection, maybe only now. Wait,
                # bounded, for that close to be recorded; the judge decides on all of it.
                await self._until_closed(winner.spec.name, first)
                raise
        return "; ".join(a.describe() for a in answers)

    async def _until_closed(self, name: str, first: int) -> None:
        """Wait (at most ``settle``) until ``name`` observed a close after op ``first``."""
        for _ in range(max(1, round(self.waits.settle / 0.01))):  # drivers offer no event
            if any(
                op.process == name and isinstance(op.body, Closed)
                for op in self.history.ops[first:]
            ):
                return
            await asyncio.sleep(0.01)

    async def _fetch_context(self, client: ClientState) -> int:
        op = self.history.invoke(client.spec.name, FetchContext())
        try:
            context = await client.driver.fetch_context(self.waits.fetch)
        except DriverError as exc:
            self.history.complete(op, "fail", Failure(error=str(exc)))
            raise
        self.history.complete(op, "ok", ContextValue(context=dict(context)))
        return op

    async def _fetch_history(self, client: ClientState, page_size: int | None = None) -> int:
        op = self.history.invoke(client.spec.name, FetchHistory(page_size=page_size))
        try:
            turns = await client.driver.fetch_history(self.waits.fetch, page_size=page_size)
        except DriverError as exc:
            self.history.complete(op, "fail", Failure(error=str(exc)))
            raise
        self.history.complete(op, "ok", HistoryPage(turns=tuple(turns)))
        return op

    async def _metrics(self) -> int:
        op = self.history.invoke("target", FetchMetrics())
        text = await self.target.metrics()
        samples = checkers.metric_samples(text) if text is not None else None
        self.history.complete(op, "ok", MetricsValue(samples=samples))
        return op

    async def _snapshot(self, client: ClientState, name: str) -> str:
        # Only what the driver can read: the checks that use a snapshot need its parts.
        can = client.driver.info.capabilities
        context_op = await self._fetch_context(client) if "context" in can else None
        history_op = await self._fetch_history(client) if "history" in can else None
        metrics_op = await self._metrics() if "metrics" in self.target.capabilities else None
        self.history.event(
            client.spec.name,
            SnapshotTaken(
                name=name, context_op=context_op, history_op=history_op, metrics_op=metrics_op
            ),
        )
        return f"snapshot {name}"

    async def _gather_for_expect(self, step: m.Expect, client_name: str | None) -> str:
        """Read what the expectation is judged on, recording each read."""
        client = self._client(client_name) if step.needs_client else None
        if step.history is not None:
            assert client is not None
            await self._fetch_history(client, step.history.page_size)
        if step.context is not None:
            assert client is not None
            await self._fetch_context(client)
        if step.resume is not None:
            assert client is not None
            if step.resume.closed is not None:
                await asyncio.sleep(self.waits.closing)  # the closing frame may be on its way
            if step.resume.notice is not None and client.driver.connected:
                # A notice follows the resume's replay: a round trip makes sure it has arrived.
                await self._fetch_context(client)
        if any(metric.between is None for metric in step.metrics):
            await self._metrics()
        if step.store is not None:
            assert client is not None
            await self._inspect_store(client)
        return "judged"

    async def _inspect_store(self, client: ClientState) -> None:
        """Read the rows of the client's last session (as the history knows it)."""
        name = client.spec.name
        session = checkers.client_view(
            self.index.of((name,), 0, len(self.history.ops)), name
        ).session
        if session is None:
            raise StepFailedError(f"{client.spec.name} has held no session to look for")
        target = self.target
        if not isinstance(target, InspectsStore):
            raise StepFailedError("the target's store cannot be inspected")
        await self._call(
            "target",
            InspectStore(session=session),
            target.stored_rows(session),
            lambda rows: StoredRows(rows=dict(rows)),
        )


def apply_verdicts(result: StepResult, verdicts: list[Verdict], *, fallback: str = "") -> None:
    """Set a step's status and message from its verdicts (the first failed one decides)."""
    result.verdicts = verdicts
    # Checks renamed "(must fail)" are the planted fault's evidence; the "must fail" verdict
    # beside them says whether they caught it.
    failed = [v for v in verdicts if not v.passed and not v.check.endswith("(must fail)")]
    if failed:
        first = failed[0]
        result.status = "failed"
        result.expected = first.expected or f"{first.check} to hold"
        result.message = f"expected {result.expected}; saw {first.message}"
        result.seen = first.message
        result.evidence = dict(first.evidence)
    elif fallback and not verdicts:
        # An operation failed and nothing judged it (a step that only acts).
        result.status = "failed"
        result.message = result.seen = fallback
    else:
        result.status = "passed"
        if verdicts:
            result.message = "; ".join(v.message for v in verdicts if not v.check.endswith(")"))
            if not result.message:
                result.message = verdicts[-1].message


_CLIENT_DROPS = ("close", "reset")


def resolve_step(scenario: m.Scenario, path: str) -> m.Step | None:
    """The step a path names (``4.3.2``: step 2 of cycle 3 of the repeat at step 4;
    ``5.p1.2``: step 2 of client p1 of the parallel at step 5; ``5.once.3.1``: step 1 of the
    `once` at step 3 of that parallel, which ran for the whole group)."""
    steps: tuple[m.Step, ...] = scenario.steps
    parts = path.split(".")
    step: m.Step | None = None
    i = 0
    while i < len(parts):
        try:
            step = steps[int(parts[i]) - 1]
        except (ValueError, IndexError):
            return None
        i += 1
        if isinstance(step, m.Repeat | m.Parallel) and i < len(parts):
            steps = step.steps
            i += 1  # the cycle number, or the parallel client's name (or `once`)
        elif isinstance(step, m.Once) and i < len(parts):
            steps = step.steps  # a step of the gate: `1.once.3.2`, step 2 of the once at 1.x.3
    return step
