"""Large ``parallel`` groups spread over worker processes: one event loop per core.

A scenario says how many clients a group has, never how to split them: the engine decides
(``--workers N``, default the cores this process may run on; groups smaller than
``threshold`` clients stay in one process). Each worker is a fresh Python process (started as
``python -m harness.workers``, like multiprocessing's spawn: nothing inherited but the
environment) that runs its share of the clients with the scenario's own runner and records
them in a history of its own; the parent merges those histories into the scenario's one
history when the group ends (docs/architecture.md, "Worker processes").

What stays in the parent:

- the fault layer and the target: a group whose clients' own steps act on them (``fault``,
  ``heal``, a ``drop`` of the proxy or the server, a ``wait`` on the virtual clock, reading
  the store) stays in one process; the ``once`` steps of a group always run in the parent,
  one time, so the herd's outage is one Toxiproxy call whichever process its clients are in;
- the gates of ``once`` (``harness.herd.Herd``): a worker's client that arrives sends
  ``Arrive``, the parent answers ``Release`` with the gate's outcome, and ``Leave`` says a
  client has no steps left;
- judging the run as a whole: a group with an ``expect`` of ``latency`` or ``metrics`` among
  its clients' steps stays in one process, because a worker judges on its own part of the
  history only.

Messages are JSON lines (msgspec), parent to worker on the worker's stdin, worker to parent
on the stdout it started with (the worker's own prints go to stderr). The merged history
stays consistent: every worker records on the parent's monotonic clock (the same clock in
every process of the machine), with operation ids from a range of its own, and the parent
sorts the merged lines by time and numbers them again.

Every wait is bounded by the scenario's timeout, which cancels the group; a worker that
exits or fails ends the scenario as an infrastructure error. Whatever ends the group
(Ctrl-C included), every worker is stopped before ``Spread`` returns: its stdin is closed (a
worker exits when it sees that, and when its parent is gone), then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from harness.errors import HarnessInfrastructureError
from harness.faults.toxiproxy_client import Stream, ToxiproxyClient
from harness.herd import Herd
from harness.history import History, Op
from harness.results import StepResult
from harness.runner import ScenarioRun, Waits, resolve_step
from harness.scenario import model as m
from harness.scenario.durations import Threshold
from harness.targets.base import fetch_metrics

__all__ = ["DEFAULT_THRESHOLD", "Spread", "default_workers", "stays_in_one_process"]

DEFAULT_THRESHOLD: Final = 500
"""Groups of fewer clients stay in one process: a worker costs about half a second to start
(an interpreter, the harness and its driver imported), which a small group does not win back."""

IDS_PER_WORKER: Final = 1_000_000_000
"""Worker ``i`` numbers its operations from ``(i + 1) * IDS_PER_WORKER``: no id of the
parent's (numbered from 1) or of another worker's can be the same."""

STOP_S: Final = 3.0
"""How long a worker has to exit after its stdin closed, and again after SIGTERM."""

LINE_LIMIT: Final = 1 << 30
"""The longest message line: a worker's whole history comes back in one."""


def default_workers() -> int:
    """The cores this process may run on (its affinity), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# --- what stays in one process -----------------------------------------------------------------


def stays_in_one_process(step: m.Parallel, clock: str) -> str | None:
    """Why the group's clients cannot be spread over workers, or None when they can."""
    for inner in _own_steps(step.steps):
        why = _shared(inner, clock)
        if why is not None:
            return f"its {_kind(inner)} step {why}"
    return None


def _own_steps(steps: Sequence[m.Step]) -> list[m.Step]:
    """The clients' own steps: nested ones of `repeat`, not those of `once` (the parent's)."""
    out: list[m.Step] = []
    for step in steps:
        out.append(step)
        if isinstance(step, m.Repeat):
            out.extend(_own_steps(step.steps))
    return out


def _shared(step: m.Step, clock: str) -> str | None:
    match step:
        case m.Once():
            latency = [s for s in m.iter_steps(step.steps) if isinstance(s, m.Expect) and s.latency]
            return "judges latencies of the whole run" if latency else None
        case m.Fault() | m.Heal():
            return "acts on the fault layer"
        case m.Drop(how="half_open" | "proxy_down"):
            return "acts on the fault layer"
        case m.Drop(how="server_restart"):
            return "restarts the target"
        case m.Wait() if clock == "virtual":
            return "moves the target's clock"
        case m.Drop(duration=duration) if clock == "virtual" and duration is not None:
            return "moves the target's clock"
        case m.Expect(latency=latency, metrics=metrics) if latency or metrics:
            return "judges the run as a whole"
        case m.Expect(store=store) if store is not None:
            return "reads the target's store"
        case m.Resume(session_of=other) if other is not None:
            return "takes over a client of the scenario"
    return None


def _kind(step: m.Step) -> str:
    return f"`{step.__struct_config__.tag}`"


# --- messages ------------------------------------------------------------------------------------


class Job(msgspec.Struct, tag="job", kw_only=True):
    """What a worker runs: its share of one group of one scenario."""

    scenario: bytes
    """The scenario as JSON (``_encode_scenario``)."""
    group: str
    """The path of the ``parallel`` step."""
    names: list[str]
    url: str
    proxy: tuple[str, int]
    credentials: dict[str, str]
    capabilities: list[str]
    driver: str
    clock: str
    seed: int | None
    waits: dict[str, float]
    start: float
    """The parent history's start (``time.monotonic()``)."""
    first_id: int
    chat_base: int
    toxiproxy_url: str


class Release(msgspec.Struct, tag="release", kw_only=True):
    key: str
    client: str
    outcome: str | None


class Arrive(msgspec.Struct, tag="arrive", kw_only=True):
    key: str
    client: str


class Leave(msgspec.Struct, tag="leave", kw_only=True):
    client: str


class Finished(msgspec.Struct, tag="finished", kw_only=True):
    ops: list[Op]
    steps: list[StepResult]
    passed: dict[str, bool]
    cpu_s: float = 0.0
    """CPU seconds the worker used so far (user and system), to say what the group cost."""


class Close(msgspec.Struct, tag="close", kw_only=True):
    """The scenario is over: close the clients (until then they stay connected, as the
    clients of a group run in the parent do)."""


class Closed(msgspec.Struct, tag="closed", kw_only=True):
    ops: list[Op]
    """What the worker recorded after ``Finished`` (observations of its open clients), or all
    it recorded when it was closed before its group ended (the scenario timed out)."""


class Crashed(msgspec.Struct, tag="crashed", kw_only=True):
    error: str
    traceback: str
    ops: list[Op] = []
    """What it had recorded: merged all the same, so the report shows how it came to this."""


ToWorker = Job | Release | Close
FromWorker = Arrive | Leave | Finished | Closed | Crashed


def _enc_hook(value: Any) -> Any:
    if isinstance(value, Threshold):
        return str(value)
    if isinstance(value, float):  # Duration
        return float(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def _dec_hook(tp: type, value: Any) -> Any:
    return m.dec_hook(tp, value)


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_to_worker = msgspec.json.Decoder(ToWorker, dec_hook=_dec_hook)
_from_worker = msgspec.json.Decoder(FromWorker, dec_hook=_dec_hook)


def _line(message: ToWorker | FromWorker) -> bytes:
    return _encoder.encode(message) + b"\n"


# --- the parent's side -------------------------------------------------------------------------


@dataclass
class Spread:
    """Spreads a scenario's large groups over ``workers`` processes (``ScenarioRun.spread``)."""

    workers: int
    driver: str
    toxiproxy_url: str
    threshold: int = DEFAULT_THRESHOLD
    notes: list[str] = field(default_factory=list)
    """Each group spread: its path and how (``step 1: 1000 clients in 2 worker processes``)."""
    live: list[_Worker] = field(default_factory=list)
    """Workers whose group ended, their clients still connected until ``aclose``."""

    def split(self, step: m.Parallel, clock: str) -> tuple[int, str]:
        """How many processes the group goes to, and why no more."""
        if self.workers <= 1:
            return 1, "one worker allowed (--workers 1)"
        if step.clients < self.threshold:
            return 1, f"{step.clients} clients, fewer than the {self.threshold} worth a worker"
        why = stays_in_one_process(step, clock)
        if why is not None:
            return 1, why
        count = min(self.workers, step.clients)
        return count, f"{step.clients} clients in {count} worker processes"

    async def __call__(
        self, run: ScenarioRun, step: m.Parallel, path: str, names: list[str]
    ) -> tuple[dict[str, bool], str] | None:
        count, why = self.split(step, run.clock)
        if count <= 1:
            return None
        size = math.ceil(len(names) / count)
        shares = [names[i : i + size] for i in range(0, len(names), size)]
        workers: list[_Worker] = []
        ended = False
        try:
            async with asyncio.TaskGroup() as group:
                herd = Herd(names, group, run.run_once)
                for index, share in enumerate(shares):
                    worker = await _Worker.start(index, self._job(run, path, share, index))
                    workers.append(worker)
                    group.create_task(worker.serve(run.scenario, herd, group))
            ended = True
        except* HarnessInfrastructureError as errors:
            raise errors.exceptions[0] from None
        finally:
            if not ended:  # failed or cancelled: stop them now, with what they recorded
                recorded = list(await asyncio.gather(*(w.close() for w in workers)))
                recorded += [w.crashed.ops for w in workers if w.crashed is not None]
                merge(run.history, [part for part in recorded if part])
        self.live.extend(workers)
        passed: dict[str, bool] = {}
        parts: list[list[Op]] = []
        for worker in workers:
            assert worker.finished is not None
            passed.update(worker.finished.passed)
            run.steps.extend(worker.finished.steps)
            parts.append(worker.finished.ops)
        merge(run.history, parts)
        cpu = ", ".join(f"{w.finished.cpu_s:.1f}" for w in workers if w.finished is not None)
        self.notes.append(f"step {path}: {why} (CPU s of each: {cpu})")
        return passed, why

    async def aclose(self, history: History) -> None:
        """Close every live worker's clients, merge what it recorded since its group ended
        into ``history``, and stop it; bounded by ``STOP_S`` per worker."""
        workers, self.live = self.live, []
        parts = await asyncio.gather(*(w.close() for w in workers))
        merge(history, [part for part in parts if part])

    def _job(self, run: ScenarioRun, path: str, share: Sequence[str], index: int) -> Job:
        return Job(
            scenario=_encoder.encode(run.scenario),
            group=path,
            names=list(share),
            url=run.target.url,
            proxy=run.faults.address,
            credentials={name: run.target.credential_for(name) for name in share},
            capabilities=sorted(run.target.capabilities),
            driver=self.driver,
            clock=run.clock,
            seed=run.seed,
            waits=dict(run.waits.__dict__),
            start=run.history.origin,
            first_id=(index + 1) * IDS_PER_WORKER,
            chat_base=(index + 1) * IDS_PER_WORKER,
            toxiproxy_url=self.toxiproxy_url,
        )


def merge(history: History, parts: Sequence[Sequence[Op]]) -> None:
    """Merge workers' operations into ``history``: in time order (stable: each process's
    own order kept), numbered again from 0. Ids stay as they are (from disjoint ranges)."""
    combined = sorted(itertools.chain(history.ops, *parts), key=lambda op: op.time)
    history.replace(
        [
            op if op.index == i else msgspec.structs.replace(op, index=i)
            for i, op in enumerate(combined)
        ]
    )


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    finished: Finished | None = None
    crashed: Crashed | None = None

    @classmethod
    async def start(cls, index: int, job: Job) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "harness.workers",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the parent, which stops it
            limit=LINE_LIMIT,
        )
        worker = cls(index, process)
        worker.send(job)
        return worker

    def send(self, message: ToWorker) -> None:
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(_line(message))

    async def serve(self, scenario: m.Scenario, herd: Herd, group: asyncio.TaskGroup) -> None:
        """Answer the worker until it reports its clients' outcome."""
        assert self.process.stdout is not None
        while self.finished is None:
            line = await self.process.stdout.readline()
            if not line:
                code = await self.process.wait()
                raise HarnessInfrastructureError(
                    f"worker process {self.index} exited (code {code}) before its clients ended"
                )
            message = _from_worker.decode(line)
            match message:
                case Arrive(key=key, client=client):
                    once = resolve_step(scenario, key)
                    assert isinstance(once, m.Once), key
                    group.create_task(self._relay(herd, key, once, client))
                case Leave(client=client):
                    herd.leave(client)
                case Finished():
                    self.finished = message
                case Crashed(error=error):
                    self.crashed = message  # its traceback went to stderr
                    raise HarnessInfrastructureError(f"worker process {self.index}: {error}")

    async def close(self) -> list[Op]:
        """Ask the worker to close its clients; what it recorded since ``Finished``."""
        rest: list[Op] = []
        try:
            self.send(Close())
            assert self.process.stdout is not None
            async with asyncio.timeout(STOP_S):
                while line := await self.process.stdout.readline():
                    message = _from_worker.decode(line)
                    if isinstance(message, Closed):
                        rest = message.ops
                        break
        except (TimeoutError, OSError, msgspec.DecodeError):
            pass  # it is stopped below all the same; a close is not a verdict
        finally:
            await self.stop()
        return rest

    async def _relay(self, herd: Herd, key: str, once: m.Once, client: str) -> None:
        outcome = await herd.arrive(key, once, client)
        self.send(Release(key=key, client=client, outcome=outcome))

    async def stop(self) -> None:
        """Close its stdin, then SIGTERM, then SIGKILL, each after ``STOP_S``."""
        process = self.process
        if process.stdin is not None:
            process.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_S):
                    await process.wait()
            if process.returncode is not None:
                return


# --- the worker's side ---------------------------------------------------------------------------


class _WorkerTarget:
    """The target as a worker's clients see it: its URL, their credentials (minted by the
    parent), its metrics over HTTP; the parent owns everything else."""

    def __init__(self, job: Job) -> None:
        self.url = job.url
        self.description = job.url
        self.capabilities = frozenset(job.capabilities)
        self._credentials = job.credentials

    def credential_for(self, user: str) -> str:
        return self._credentials.get(user, "")

    async def start(self) -> None:
        return None

    async def advance_clock(self, seconds: float) -> None:
        raise HarnessInfrastructureError("a worker process does not move the target's clock")

    async def restart(self) -> None:
        raise HarnessInfrastructureError("a worker process does not restart the target")

    async def metrics(self) -> str | None:
        return await fetch_metrics(self.url) if "metrics" in self.capabilities else None

    async def settle(self, connected: int, timeout: float) -> None:
        # The gauge counts every process's clients: a worker cannot tell whose drop the
        # target noticed. Groups whose waits move a virtual clock (where it matters) stay in
        # one process.
        return None

    async def stop(self) -> None:
        return None


class _WorkerFaults:
    """The fault layer as a worker sees it: the proxy's address, and whether Toxiproxy
    answers (to blame it, not the target, for a failed step); the parent acts on it."""

    def __init__(self, job: Job) -> None:
        self._address = job.proxy
        self._api = ToxiproxyClient(job.toxiproxy_url)

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    async def start(self, upstream: str) -> None:
        return None

    async def healthy(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._api.version()
        except (TimeoutError, HarnessInfrastructureError):
            return False
        return True

    async def _not_here(self) -> None:
        raise HarnessInfrastructureError("a worker process does not act on the fault layer")

    async def down(self) -> None:
        await self._not_here()

    async def up(self) -> None:
        await self._not_here()

    async def half_open(self) -> None:
        await self._not_here()

    async def add(
        self, kind: str, attributes: dict[str, int | float], *, stream: Stream, toxicity: float
    ) -> str:
        await self._not_here()
        return ""

    async def remove(self, name: str) -> None:
        await self._not_here()

    async def heal(self) -> None:
        await self._not_here()

    async def close(self) -> None:
        await self._api.aclose()


class _RemoteHerd:
    """The parent's gates, for a worker's clients."""

    def __init__(self, write: Callable[[FromWorker], None]) -> None:
        self._write = write
        self.waiting: dict[tuple[str, str], asyncio.Future[str | None]] = {}

    async def arrive(self, key: str, once: m.Once, client: str) -> str | None:
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.waiting[(key, client)] = future
        self._write(Arrive(key=key, client=client))
        try:
            return await future
        finally:
            self.waiting.pop((key, client), None)

    def leave(self, client: str) -> None:
        self._write(Leave(client=client))

    def release(self, message: Release) -> None:
        future = self.waiting.get((message.key, message.client))
        if future is not None and not future.done():
            future.set_result(message.outcome)


def _worker_history(job: Job) -> History:
    """A history on the parent's clock whose ids cannot meet the parent's or another's."""
    return History(origin=job.start, first_id=job.first_id)


async def _work(out: Any) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def write(message: FromWorker) -> None:
        out.write(_line(message))
        out.flush()

    first = await reader.readline()
    if not first:
        return
    job = _to_worker.decode(first)
    assert isinstance(job, Job)
    history = _worker_history(job)
    try:
        await _run_job(job, history, reader, write)
    except Exception as exc:  # reported to the parent, which ends the scenario
        error: BaseException = exc
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        where = traceback.format_exc()
        print(where, file=sys.stderr)
        history.close_unfinished(f"the worker failed: {type(error).__name__}: {error}")
        write(Crashed(error=f"{type(error).__name__}: {error}", traceback=where, ops=history.ops))


async def _run_job(
    job: Job, history: History, reader: asyncio.StreamReader, write: Callable[[FromWorker], None]
) -> None:
    from harness.driver import registry

    scenario = msgspec.json.decode(job.scenario, type=m.Scenario, dec_hook=_dec_hook)
    step = resolve_step(scenario, job.group)
    assert isinstance(step, m.Parallel), job.group
    faults = _WorkerFaults(job)
    run = ScenarioRun(
        scenario,
        target=_WorkerTarget(job),
        faults=faults,
        history=history,
        driver=registry.load(job.driver),
        clock="virtual" if job.clock == "virtual" else "real",
        seed=job.seed,
        waits=Waits(**job.waits),
    )
    run.chat_counter = job.chat_base
    herd = _RemoteHerd(write)

    closing = asyncio.Event()

    async def listen() -> None:
        """Releases from the parent, then its ``Close``; its going away (EOF) ends the worker."""
        while line := await reader.readline():
            message = _to_worker.decode(line)
            if isinstance(message, Release):
                herd.release(message)
            elif isinstance(message, Close):
                closing.set()
                return
        raise HarnessInfrastructureError("the parent process went away")

    sent = 0
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(listen())
            running = group.create_task(run.run_group(step, job.group, job.names, herd))
            asked = group.create_task(closing.wait())
            await asyncio.wait([running, asked], return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                passed = running.result()
                history.close_unfinished("the scenario ended before it completed")
                sent = len(history.ops)
                cpu = time.process_time()
                write(Finished(ops=history.ops, steps=run.steps, passed=passed, cpu_s=cpu))
                # The clients stay connected, as in the parent, until the scenario is over.
                await asked
            else:  # the parent stops the group (a timeout, Ctrl-C): say what happened so far
                running.cancel()
    finally:
        for name in job.names:
            with contextlib.suppress(Exception):
                await run.clients[name].driver.aclose()
        await faults.close()
    history.close_unfinished("the scenario ended before it completed")
    write(Closed(ops=history.ops[sent:]))


def main() -> None:
    """``python -m harness.workers``: one worker, speaking JSON lines on stdin and stdout."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # prints (of a plugin driver, say) go to stderr, not into the messages
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its workers itself
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(_work(out))


if __name__ == "__main__":
    main()
