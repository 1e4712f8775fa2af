"""The node's one pipeline to Redis: commits and deletes, in the order they were made.

Every change a node makes is queued here (``submit``) and sent in batches: whatever queued
while the previous batch was on the wire goes in the next one, as one Redis pipeline, so a
busy node pays one round trip for many changes. Redis runs a pipeline's commands in order, so
one session's changes are applied in the order the session made them.

Each commit carries the session version its writer expects (compare-and-set, store/redis.py):
a change of a session another node has taken meanwhile is refused, and so is every later one
of that session in the batch, since its version never moved. The writer reports each answer
to ``on_done``; a batch Redis did not answer in time is reported as failed, op by op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, RedisError

from reference_server.store.base import Change
from reference_server.store.redis import Committed, RedisStore

from .link import StoreLink

if TYPE_CHECKING:
    from .registry import ClusterHost

log = logging.getLogger("reference_server")


@dataclass(eq=False)
class CommitOp:
    """Store one change of a session held by this node."""

    host: ClusterHost
    change: Change
    frames: list[bytes]
    """What the change produced, sent once it is stored."""
    expected: int
    attach: int = 0
    """1 for the commit of an accepted hello or resume."""
    expires_at: float | None = None
    """The end of the resumable window, when the change detaches the session."""
    done: asyncio.Future[Committed] | None = None


@dataclass(eq=False)
class DeleteOp:
    """Delete a session (expired, revoked, closed) and leave its tombstone."""

    host: ClusterHost | None
    session_id: str
    reason: str
    at: float
    expected: int
    done: asyncio.Future[bool] | None = None


Op = CommitOp | DeleteOp
Result = Committed | bool | BaseException


@dataclass(eq=False)
class StoreWriter:
    """Sends queued ops to Redis in batches; ``run()`` until cancelled."""

    store: RedisStore
    node_id: str
    on_done: Callable[[Op, Result], None]
    now: Callable[[], float]
    timeout_s: float
    link: StoreLink
    _queue: list[Op] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    batches: int = 0

    def __post_init__(self) -> None:
        self._idle.set()

    def submit(self, op: Op) -> None:
        """Queue one op; it goes out with the next batch."""
        self._queue.append(op)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Send batches until cancelled; what is queued at cancellation is reported failed."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                batch, self._queue = self._queue, []
                if batch:
                    await self._send(batch)
                if not self._queue:
                    self._idle.set()
                _raise_if_cancelled()
        finally:
            batch, self._queue = self._queue, []
            for op in batch:
                self._report(op, ConnectionError("the node is stopping"))

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until everything queued so far has been answered."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def _send(self, batch: list[Op]) -> None:
        self.batches += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self._execute(batch)
                if any(isinstance(reply, NoScriptError) for reply in replies):
                    # Redis restarted and forgot the scripts: a NOSCRIPT op did not run, so it
                    # is safe to send again once the scripts are loaded.
                    await self.store.load_scripts()
                    again = [op for op, r in zip(batch, replies, strict=True) if _noscript(r)]
                    retried = dict(zip(map(id, again), await self._execute(again), strict=True))
                    replies = [retried.get(id(op), r) for op, r in zip(batch, replies, strict=True)]
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("store batch of %d failed: %s", len(batch), exc or type(exc).__name__)
            self.link.failed("commit")
            for op in batch:
                self._report(op, exc)
            return
        self.link.succeeded()  # Redis answered every op (a refused commit is an answer too)
        for op, reply in zip(batch, replies, strict=True):
            if isinstance(reply, BaseException):
                self._report(op, reply)
            elif isinstance(op, CommitOp):
                self._report(op, self.store.commit_result(op.change.snapshot.session_id, reply))
            else:
                self._report(op, bool(reply))

    async def _execute(self, batch: list[Op]) -> list[Any]:
        """One pipeline for the batch; the answer of each op's script, in order."""
        store = self.store
        script_at: list[int] = []
        async with store.client.pipeline(transaction=False) as pipe:
            for op in batch:
                script_at.append(len(pipe.command_stack))
                if isinstance(op, CommitOp):
                    sid = op.change.snapshot.session_id
                    store.queue_commit(
                        pipe,
                        op.change,
                        expected=op.expected,
                        owner=self.node_id,
                        attach=op.attach,
                        now=self.now(),
                        attached=op.host.attached - op.attach,  # fencing by attach too
                    )
                    if op.attach:
                        pipe.sadd(store.node_sessions_key(self.node_id), sid)
                    if op.expires_at is not None:
                        pipe.zadd(store.expiry_key, {sid: op.expires_at})
                        pipe.srem(store.node_sessions_key(self.node_id), sid)
                else:
                    attached = -1 if op.host is None else op.host.attached
                    store.queue_delete(pipe, op.session_id, op.reason, op.at, op.expected, attached)
            replies = await pipe.execute(raise_on_error=False)
        return [replies[at] for at in script_at]

    def _report(self, op: Op, result: Result) -> None:
        try:
            self.on_done(op, result)
        except Exception:  # one session's bookkeeping must not stop the node's writes
            log.exception("store result handler failed")


def _raise_if_cancelled() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _noscript(reply: Any) -> bool:
    return isinstance(reply, NoScriptError)
