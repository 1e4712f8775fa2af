"""The recorded history of a scenario: the one record that checkers judge (Jepsen style).

The runner, not the driver, writes it. Every call the runner makes of a driver, a target, the
fault layer or the clock is recorded twice: ``invoke`` when it starts and ``ok``, ``fail`` or
``info`` (outcome unknown: a message sent on a connection that then died) when it ends, with
monotonic times and typed bodies. What drivers observe on their own (a delivery at a stream
position, a notice, a close) is recorded as an ``event``. Every body is a msgspec struct of the
``Body`` union below, tagged by ``type``, so a saved history decodes back to exactly these types
and ``harness check`` can judge it again.

Nothing here knows a protocol: positions are what the driver says they are (``Position``), and
streams are the driver's names for a sequence of positions.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal, TypeAlias, TypeVar

import msgspec

Phase = Literal["invoke", "ok", "fail", "info", "event"]
Position: TypeAlias = int | str
"""A place in a server's stream: a dense or increasing integer, or an opaque string."""
OutcomeKind = Literal["new", "full", "degraded", "rejected"]


class _Body(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every history body."""


# --- what targets advertise and answer ------------------------------------------------------


class Terms(msgspec.Struct, frozen=True, kw_only=True):
    """What a target advertised about its sessions; None where it advertised nothing."""

    full_window_s: float | None = None
    resumable_window_s: float | None = None
    ip_policy: str | None = None
    capabilities: tuple[str, ...] = ()


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """One stored turn of the conversation, as the server answered it."""

    index: int
    role: str
    message_id: str
    text: str


# --- invocations (phase "invoke") ------------------------------------------------------------


class Connect(_Body, tag="connect", frozen=True, kw_only=True):
    """Open a new session (one attempt; retries are separate operations)."""

    attempt: int = 1


class Resume(_Body, tag="resume", frozen=True, kw_only=True):
    """Resume the client's session, replay its previous token, or take over another's."""

    attempt: int = 1
    token: Literal["current", "previous"] = "current"
    session_of: str | None = None


class SendMessage(_Body, tag="send", frozen=True, kw_only=True):
    """Send (or queue, while disconnected) one user message."""

    text: str


class AwaitReply(_Body, tag="reply", frozen=True, kw_only=True):
    """Wait for the complete reply to one message."""

    message_id: str
    timeout: float


class Resend(_Body, tag="resend", frozen=True, kw_only=True):
    """Send a message already answered again, with the same id."""

    message_id: str
    renumber: bool


class FetchHistory(_Body, tag="history", frozen=True, kw_only=True):
    """Read the conversation the server stores (in pages of ``page_size``, if given)."""

    page_size: int | None = None


class FetchContext(_Body, tag="context", frozen=True, kw_only=True):
    """Read the agent context the server stores."""


class Disconnect(_Body, tag="disconnect", frozen=True, kw_only=True):
    """Close the client's connection cleanly, or reset it (RST)."""

    how: Literal["close", "reset"]


class SendRaw(_Body, tag="send_raw", frozen=True, kw_only=True):
    """Send one frame exactly as written."""

    size: int
    binary: bool
    until_close: bool = False


class FetchMetrics(_Body, tag="metrics", frozen=True, kw_only=True):
    """Read the target's metrics."""


class FaultAction(_Body, tag="fault", frozen=True, kw_only=True):
    """An action on the fault layer (Toxiproxy): take the proxy down, add a toxic, heal."""

    action: Literal[
        "create", "down", "up", "half_open", "add_toxic", "remove_toxic", "heal", "delete"
    ]
    toxic: str | None = None
    toxic_type: str | None = None
    stream: str | None = None
    toxicity: float | None = None
    attributes: dict[str, float] = {}
    upstream: str | None = None


class AdvanceClock(_Body, tag="advance_clock", frozen=True, kw_only=True):
    """Move the target's virtual clock forward."""

    seconds: float


class RealWait(_Body, tag="sleep", frozen=True, kw_only=True):
    """Let real time pass."""

    seconds: float


class Restart(_Body, tag="restart", frozen=True, kw_only=True):
    """Kill the target and start it again on its durable store."""


class NodeAction(_Body, tag="node", frozen=True, kw_only=True):
    """Kill one node of a cluster target (SIGKILL), or start it again."""

    action: Literal["kill", "start"]
    node: int


class InspectStore(_Body, tag="inspect_store", frozen=True, kw_only=True):
    """Read how many rows the target's store holds for a session."""

    session: str


class AwaitHerd(_Body, tag="await_herd", frozen=True, kw_only=True):
    """Wait at a ``once`` step for the rest of the ``parallel`` group; it completes ``ok``
    once the steps of ``once`` ran and held (``gate`` is the prefix of their paths)."""

    gate: str


class StepStart(_Body, tag="step", frozen=True, kw_only=True):
    """A scenario step begins; ``path`` finds its definition in the scenario."""

    path: str
    kind: str
    client: str | None = None


# --- completions (phases "ok", "fail", "info") -----------------------------------------------


class Outcome(_Body, tag="outcome", frozen=True, kw_only=True):
    """How a connect or resume ended, in neutral terms.

    ``session`` names the server's session (the conversation); ``stream`` names the sequence
    of positions deliveries arrive in, and ``after`` the last position the client already had
    in it when this connection began (deliveries continue after it). ``missed`` is the range
    of positions the target declared lost (inclusive)."""

    kind: OutcomeKind
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    gap_s: float | None = None
    replayed: int | None = None
    missed: tuple[Position, Position] | None = None
    session: str | None = None
    stream: str | None = None
    after: Position | None = None
    terms: Terms | None = None
    retry_after: float | None = None
    """Seconds the target asked the client to wait before trying again, if it said."""


class Sent(_Body, tag="sent", frozen=True, kw_only=True):
    message_id: str
    connected: bool


class Replied(_Body, tag="replied", frozen=True, kw_only=True):
    parts: int


class HistoryPage(_Body, tag="turns", frozen=True, kw_only=True):
    turns: tuple[Turn, ...]


class ContextValue(_Body, tag="context_value", frozen=True, kw_only=True):
    context: dict[str, Any]


class RawAnswer(_Body, tag="raw_answer", frozen=True, kw_only=True):
    error: str | None
    close: int | None


class MetricsValue(_Body, tag="metrics_value", frozen=True, kw_only=True):
    """The target's samples by name (the first sample of each); None: it exposes none."""

    samples: dict[str, float] | None


class StoredRows(_Body, tag="stored_rows", frozen=True, kw_only=True):
    """Rows per part of the store (table) for the session asked about."""

    rows: dict[str, int]


class Done(_Body, tag="done", frozen=True, kw_only=True):
    detail: str = ""


class Failure(_Body, tag="failure", frozen=True, kw_only=True):
    """Why an operation failed (or, in phase ``info``, why its outcome is unknown)."""

    error: str
    infrastructure: bool = False
    """True when the harness's own machinery (the fault layer) did not answer."""


class StepEnd(_Body, tag="step_end", frozen=True, kw_only=True):
    status: str


# --- observations (phase "event") ------------------------------------------------------------


class Delivered(_Body, tag="delivered", frozen=True, kw_only=True):
    """A numbered message arrived at the client, as the wire brought it (duplicates too)."""

    stream: str
    position: Position
    kind: str
    reply_to: str | None = None
    text: str | None = None
    final: bool = False


class Notice(_Body, tag="notice", frozen=True, kw_only=True):
    """The target told the client something about its session (e.g. an IP change)."""

    kind: str
    detail: dict[str, str] = {}


class Closed(_Body, tag="closed", frozen=True, kw_only=True):
    """The target closed the client's connection, with the reason and code it gave."""

    code: int | None
    reason: str | None = None


class Violation(_Body, tag="violation", frozen=True, kw_only=True):
    """The target broke its protocol in a way the driver detected."""

    message: str


class Retry(_Body, tag="retry", frozen=True, kw_only=True):
    """The runner backs off before trying a connect or resume again."""

    of: str
    attempt: int
    delay: float


class RouteChanged(_Body, tag="route", frozen=True, kw_only=True):
    """The client's next connections come from another address, or (on a cluster target) go
    to another node."""

    source: str | None
    forwarded_for: str | None
    node: int | None = None
    """The node (1-based) the next connections go to, when the runner chose one."""


class SnapshotTaken(_Body, tag="snapshot", frozen=True, kw_only=True):
    """A named snapshot: the ids of the operations that read its context, turns, metrics."""

    name: str
    context_op: int | None
    history_op: int | None
    metrics_op: int | None


Body: TypeAlias = (
    Connect
    | Resume
    | SendMessage
    | AwaitReply
    | Resend
    | FetchHistory
    | FetchContext
    | Disconnect
    | SendRaw
    | FetchMetrics
    | FaultAction
    | AdvanceClock
    | RealWait
    | Restart
    | NodeAction
    | InspectStore
    | AwaitHerd
    | StepStart
    | Outcome
    | Sent
    | Replied
    | HistoryPage
    | ContextValue
    | RawAnswer
    | MetricsValue
    | StoredRows
    | Done
    | Failure
    | StepEnd
    | Delivered
    | Notice
    | Closed
    | Violation
    | Retry
    | RouteChanged
    | SnapshotTaken
)
Observation: TypeAlias = Delivered | Notice | Closed | Violation
"""What a driver may report on its own; everything else the runner records."""

B = TypeVar("B", bound=_Body)


class Op(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One line of the history: ``id`` pairs an invocation with its completion."""

    index: int
    id: int
    process: str
    """The client's name, or ``runner``, ``fault``, ``clock``, ``target``."""
    phase: Phase
    time: float
    """Seconds since the scenario began (monotonic)."""
    body: Body


class History:
    """An append-only list of operations with one monotonic clock."""

    def __init__(
        self, ops: Sequence[Op] = (), *, origin: float | None = None, first_id: int | None = None
    ) -> None:
        """``origin`` (a ``time.monotonic()``) and ``first_id``: a worker process's history
        on its parent's clock, with ids of its own range (``harness.workers``)."""
        self.ops: list[Op] = list(ops)
        first = max((op.id for op in self.ops), default=0) + 1 if first_id is None else first_id
        self._ids = itertools.count(first)
        self._start = time.monotonic() if origin is None else origin
        self._open: dict[int, Op] = {}
        self.revision = 0
        """Bumped when ``replace`` reorders the operations (so indexes of it start again)."""

    def replace(self, ops: Sequence[Op]) -> None:
        """Put ``ops`` in place of the operations (a merge of workers' histories)."""
        self.ops[:] = ops
        self.revision += 1

    @property
    def origin(self) -> float:
        """The ``time.monotonic()`` that op times count from (the same clock in every process
        of the machine)."""
        return self._start

    def now(self) -> float:
        """Seconds since the history began."""
        return time.monotonic() - self._start

    def _append(self, op_id: int, process: str, phase: Phase, body: Body) -> Op:
        op = Op(
            index=len(self.ops), id=op_id, process=process, phase=phase, time=self.now(), body=body
        )
        self.ops.append(op)
        return op

    def invoke(self, process: str, body: Body) -> int:
        """Record the start of an operation; return its id for ``complete``."""
        op_id = next(self._ids)
        self._open[op_id] = self._append(op_id, process, "invoke", body)
        return op_id

    def complete(self, op_id: int, phase: Literal["ok", "fail", "info"], body: Body) -> Op:
        """Record how operation ``op_id`` ended."""
        start = self._open.pop(op_id)
        return self._append(op_id, start.process, phase, body)

    def event(self, process: str, body: Body) -> Op:
        """Record something observed rather than done."""
        return self._append(next(self._ids), process, "event", body)

    def unfinished(self) -> list[Op]:
        """Invocations that have not completed (a run cut short by a timeout)."""
        return list(self._open.values())

    def close_unfinished(self, why: str) -> None:
        """Complete every open operation as ``info``: its outcome is unknown."""
        for op_id in list(self._open):
            self.complete(op_id, "info", Failure(error=why))


# --- reading a history --------------------------------------------------------------------------


def bodies(ops: Sequence[Op], kind: type[B], process: str | None = None) -> Iterator[tuple[Op, B]]:
    """Each op whose body is a ``kind``, with that body (typed), optionally of one process."""
    for op in ops:
        if isinstance(op.body, kind) and (process is None or op.process == process):
            yield op, op.body


def completion(ops: Sequence[Op], op_id: int) -> Op | None:
    """The op that completed invocation ``op_id``, if it did."""
    return next((o for o in ops if o.id == op_id and o.phase != "invoke"), None)


def durations(ops: Sequence[Op], kind: type[_Body]) -> list[float]:
    """Seconds each successful (``ok``) operation of ``kind`` took, in completion order."""
    starts = {op.id: op.time for op in ops if op.phase == "invoke" and isinstance(op.body, kind)}
    return [op.time - starts[op.id] for op in ops if op.phase == "ok" and op.id in starts]


OPERATION_KINDS: dict[str, type[_Body]] = {
    "connect": Connect,
    "resume": Resume,
    "chat": AwaitReply,
    "history": FetchHistory,
    "context": FetchContext,
}
"""Operations whose latency a scenario can bound, by the name scenario files use."""


def encode(ops: Sequence[Op]) -> bytes:
    return msgspec.json.encode(list(ops))


def decode(data: bytes | str) -> list[Op]:
    return msgspec.json.decode(data, type=list[Op])
