"""The typed scenario model: what a scenario file means once it is loaded (docs/scenarios.md).

Every class is a frozen msgspec ``Struct`` that forbids unknown fields. Steps form a tagged union
on ``step``; a YAML file writes a step as ``- drop: {how: reset}`` and the loader turns that into
``{"step": "drop", "how": "reset"}`` before ``msgspec.convert(data, Scenario, dec_hook=dec_hook)``.

Rules that involve one struct live in its ``__post_init__`` and raise ``ConstraintError`` naming
the field, so they hold for scenarios built in Python too. Rules that involve several parts of a
scenario (client names, snapshot names) live in ``harness.scenario.crosscheck``.

The language is protocol-neutral: nothing here names a field of the reference protocol.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec

from harness.scenario.durations import Duration, Threshold, parse_duration, parse_threshold

__all__ = [
    "TOXIC_ATTRIBUTES",
    "ChangeIp",
    "Chat",
    "ClientSpec",
    "Connect",
    "ConstraintError",
    "ContextExpect",
    "DeliveryExpect",
    "Drop",
    "Expect",
    "Fault",
    "Heal",
    "HistoryExpect",
    "LatencyExpect",
    "MetricExpect",
    "Once",
    "Parallel",
    "ReconnectFresh",
    "Repeat",
    "Resume",
    "ResumeExpect",
    "Scenario",
    "Send",
    "Snapshot",
    "Step",
    "StoreExpect",
    "Wait",
    "dec_hook",
    "iter_steps",
    "step_kinds",
]


class ConstraintError(ValueError):
    """A rule about a struct's fields does not hold; ``field`` names the field it points at.

    msgspec turns it into a ``ValidationError`` whose ``__cause__`` is this error, which is how the
    loader finds the field (``None``: the struct as a whole).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def dec_hook(tp: type, value: Any) -> Any:
    """Convert a YAML value to a ``Duration`` or a ``Threshold`` inside ``msgspec.convert``."""
    if tp is Duration:
        return Duration(parse_duration(value))
    if tp is Threshold:
        return parse_threshold(value)
    raise NotImplementedError(f"no conversion to {tp!r}")


def _seconds(value: float) -> Any:
    # A default_factory, not a plain default: msgspec.json.schema cannot encode a Duration default
    # (harness.scenario.schema writes the defaults in itself).
    return msgspec.field(default_factory=lambda: Duration(value))


NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]


class _Model(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every struct of the model (``kw_only`` is not inherited: each class repeats it)."""


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------


class ClientSpec(_Model, frozen=True, kw_only=True):
    """A client of the scenario: ``name`` for steps to refer to, ``user`` to log in as, ``route``.

    ``route: proxy`` goes through the fault layer (Toxiproxy); ``direct`` connects to the target
    itself, so faults do not touch it. ``user`` defaults to ``name``.
    """

    name: NonEmptyStr
    user: str | None = None
    route: Literal["proxy", "direct"] = "proxy"

    def __post_init__(self) -> None:
        if self.user is None:
            msgspec.structs.force_setattr(self, "user", self.name)


# --------------------------------------------------------------------------------------------
# Expectations (fields of the ``expect`` step)
# --------------------------------------------------------------------------------------------


class HistoryExpect(_Model, frozen=True, kw_only=True):
    """What the client's conversation history, as the target returns it, must look like."""

    count: Annotated[int, msgspec.Meta(ge=0)] | None = None
    order: bool = True
    no_loss: bool = True
    no_duplicates: bool = True
    contains: tuple[str, ...] = ()
    replies: bool = True
    """Each stored reply to a sent message is the text the client received for it."""
    page_size: Annotated[int, msgspec.Meta(ge=1, le=500)] | None = None
    """Read the history in pages of this many turns (paging bugs show only when it pages)."""


class ContextExpect(_Model, frozen=True, kw_only=True):
    """What the agent context must look like, compared with a snapshot taken earlier.

    Either ``equals: <snapshot>`` (the same as then) or ``preserved: <threshold>`` with
    ``against: <snapshot>`` (the share of the snapshot's entries still there); ``keys`` limits the
    comparison to those top-level keys of the context.
    """

    equals: NonEmptyStr | None = None
    preserved: Threshold | None = None
    against: NonEmptyStr | None = None
    keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.equals is not None and self.preserved is not None:
            raise ConstraintError("give `equals` or `preserved`, not both", "preserved")
        if self.equals is None and self.preserved is None:
            raise ConstraintError("give `equals: <snapshot>` or `preserved: <threshold>`")
        if self.preserved is not None:
            if self.against is None:
                raise ConstraintError(
                    "`preserved` needs `against: <snapshot>` to compare with", "preserved"
                )
            if self.preserved.unit == "s":
                raise ConstraintError(
                    "`preserved` is a ratio, like '>= 0.95' or '>= 95%', not a time", "preserved"
                )
        if self.against is not None and self.preserved is None:
            raise ConstraintError("`against` only goes with `preserved`", "against")


class ResumeExpect(_Model, frozen=True, kw_only=True):
    """What the last resume of the client must have reported."""

    outcome: Literal["full", "degraded", "rejected", "any"] | None = None
    warnings: tuple[str, ...] | None = None
    notice: bool | None = None
    closed: NonEmptyStr | None = None
    """The reason the target gave when it last closed this client's connection
    (e.g. ``session_taken_over``, ``session_revoked``)."""

    def __post_init__(self) -> None:
        parts = (self.outcome, self.warnings, self.notice, self.closed)
        if all(part is None for part in parts):
            raise ConstraintError("give at least one of `outcome`, `warnings`, `notice`, `closed`")


LatencyOperation = Literal["connect", "resume", "chat", "history", "context"]


class LatencyExpect(_Model, frozen=True, kw_only=True):
    """Bounds on the latency of one kind of operation, measured over the whole run so far.

    With ``against: <operation>`` each bound is a ratio to the same statistic of that other
    operation measured in the same run (``{operation: resume, against: connect, p50: "< 3"}``:
    a resume's median at most three times a connect's), so a bound holds on a slow machine
    and a fast one alike and still catches a resume that became far slower than normal."""

    operation: LatencyOperation
    against: LatencyOperation | None = None
    p50: Threshold | None = None
    p95: Threshold | None = None
    p99: Threshold | None = None
    max: Threshold | None = None
    mean: Threshold | None = None

    def __post_init__(self) -> None:
        statistics = {"p50": self.p50, "p95": self.p95, "p99": self.p99}
        statistics |= {"max": self.max, "mean": self.mean}
        if all(value is None for value in statistics.values()):
            raise ConstraintError("give at least one of `p50`, `p95`, `p99`, `max`, `mean`")
        if self.against == self.operation:
            raise ConstraintError("`against` must name another operation", "against")
        for name, threshold in statistics.items():
            if threshold is None:
                continue
            if self.against is None and threshold.unit != "s":
                raise ConstraintError(
                    f"a latency bound is a time, like '< 500ms'; got {str(threshold)!r}", name
                )
            if self.against is not None and threshold.unit != "":
                raise ConstraintError(
                    f"with `against`, a bound is a ratio, like '< 3'; got {str(threshold)!r}",
                    name,
                )


class MetricExpect(_Model, frozen=True, kw_only=True):
    """A bound on a metric the target exposes: its ``value`` now, or its ``growth``.

    ``growth`` is the relative change (``"< 5%"`` or ``"< 0.05"``) between the two snapshots named
    in ``between``, or from the start of the run to this step without ``between``.
    """

    name: NonEmptyStr
    growth: Threshold | None = None
    value: Threshold | None = None
    between: tuple[NonEmptyStr, NonEmptyStr] | None = None

    def __post_init__(self) -> None:
        if self.growth is not None and self.value is not None:
            raise ConstraintError("give `growth` or `value`, not both", "value")
        if self.growth is None and self.value is None:
            raise ConstraintError("give `growth` or `value`")
        if self.growth is not None and self.growth.unit == "s":
            raise ConstraintError(
                "`growth` is a ratio, like '< 5%' or '< 0.05', not a time", "growth"
            )
        if self.between is not None and self.growth is None:
            raise ConstraintError("`between` only goes with `growth`", "between")


class StoreExpect(_Model, frozen=True, kw_only=True):
    """What the target's store holds for the client's last session (``inspect_store``)."""

    gone: bool
    """``true``: no row of the session is left (after it expired or ended); ``false``: the
    session is still stored."""


class DeliveryExpect(_Model, frozen=True, kw_only=True):
    """What the messages the client was sent, counted over the whole run, must satisfy."""

    no_loss: bool = True
    no_duplicates: bool = True
    order: bool = True
    replies: bool = False
    """Every message sent in the client's session has its complete reply at this client: how
    loss is judged where positions are opaque (they only show duplicates)."""


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


class _Step(_Model, tag_field="step", frozen=True, kw_only=True):
    """Base of the steps; ``step`` (the tag) is the kind a YAML file writes as the step's key."""


NodeNumber = Annotated[int, msgspec.Meta(ge=1, le=8)]


class Connect(_Step, tag="connect", frozen=True, kw_only=True):
    """Open a new session for the client."""

    client: str | None = None
    node: NodeNumber | None = None
    """On a cluster target (``nodes``), the node this connection goes to (1 to ``nodes``)."""


class Chat(_Step, tag="chat", frozen=True, kw_only=True):
    """Send ``messages`` user messages one at a time, each waiting ``timeout`` for its reply."""

    client: str | None = None
    messages: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    text: str | None = None
    timeout: Duration = _seconds(5.0)
    expect: Literal["reply", "timeout", "queued"] = "reply"
    """``reply``: each message is answered in time. ``timeout``: no complete reply comes in
    time (the network is broken on purpose). ``queued``: the client is disconnected, so the
    messages wait for the next resume (their replies are checked by later steps)."""
    resend: Literal["same_seq", "new_seq"] | None = None
    """Once a message is answered, send it again with the same id: under its own number
    (``same_seq``, a client unsure its request arrived) or a new one (``new_seq``, a client
    that restarted and renumbered). It must not be processed twice."""

    def __post_init__(self) -> None:
        if self.resend is not None and self.expect != "reply":
            raise ConstraintError(
                f"`resend` goes with `expect: reply` (this step expects {self.expect})", "resend"
            )


class Send(_Step, tag="send", frozen=True, kw_only=True):
    """Send one raw frame as it is written, and optionally expect an error or a close in reply."""

    client: str | None = None
    frame: str
    binary: bool = False
    expect_error: NonEmptyStr | None = None
    expect_close: Annotated[int, msgspec.Meta(ge=1000, le=4999)] | None = None
    timeout: Duration = _seconds(2.0)


DropHow = Literal["close", "reset", "half_open", "proxy_down", "server_restart"]


class Drop(_Step, tag="drop", frozen=True, kw_only=True):
    """Break the client's connection, every proxied one, or the target (``how``) for ``duration``.

    ``close`` and ``reset`` act on the client's own socket; ``half_open`` and ``proxy_down`` on
    every connection through the scenario's proxy; ``server_restart`` on the target.
    """

    client: str | None = None
    how: DropHow
    duration: Duration | None = None


ToxicType = Literal[
    "latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data"
]

# toxic -> (attributes it needs, attributes it may take). Everything else is an error.
TOXIC_ATTRIBUTES: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "latency": (("latency",), ("jitter",)),
    "bandwidth": (("rate_kbps",), ()),
    "slow_close": (("delay",), ()),
    "timeout": (("timeout",), ()),
    "reset_peer": ((), ("timeout",)),
    "slicer": (("average_size",), ("size_variation", "slice_delay")),
    "limit_data": (("bytes",), ()),
}
_ALL_TOXIC_ATTRIBUTES: Final = (
    "latency",
    "jitter",
    "delay",
    "timeout",
    "slice_delay",
    "rate_kbps",
    "average_size",
    "size_variation",
    "bytes",
)


class Fault(_Step, tag="fault", frozen=True, kw_only=True):
    """Add a Toxiproxy toxic to the proxied connections until ``heal`` (or for ``duration``).

    Each toxic takes exactly its own attributes (``TOXIC_ATTRIBUTES``).
    """

    toxic: ToxicType
    stream: Literal["downstream", "upstream"] = "downstream"
    toxicity: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1.0
    duration: Duration | None = None
    latency: Duration | None = None
    jitter: Duration | None = None
    delay: Duration | None = None
    timeout: Duration | None = None
    slice_delay: Duration | None = None
    rate_kbps: Annotated[int, msgspec.Meta(ge=1)] | None = None
    average_size: Annotated[int, msgspec.Meta(ge=1)] | None = None
    size_variation: Annotated[int, msgspec.Meta(ge=0)] | None = None
    name: NonEmptyStr | None = None
    bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None

    def __post_init__(self) -> None:
        required, optional = TOXIC_ATTRIBUTES[self.toxic]
        allowed = required + optional
        given = [a for a in _ALL_TOXIC_ATTRIBUTES if getattr(self, a) is not None]
        for attribute in given:
            if attribute not in allowed:
                takes = ", ".join(f"`{a}`" for a in allowed) or "no attributes"
                raise ConstraintError(
                    f"the `{self.toxic}` toxic has no attribute `{attribute}` (it takes {takes})",
                    attribute,
                )
        for attribute in required:
            if attribute not in given:
                raise ConstraintError(f"the `{self.toxic}` toxic needs `{attribute}`")


class Heal(_Step, tag="heal", frozen=True, kw_only=True):
    """Remove every toxic and bring every proxy back up."""


class Wait(_Step, tag="wait", frozen=True, kw_only=True):
    """Let ``duration`` pass (on the scenario's clock: virtual or real)."""

    duration: Duration


_LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")


class ChangeIp(_Step, tag="change_ip", frozen=True, kw_only=True):
    """Make the client's next connections come from another address.

    ``source``: bind the client's socket to that loopback address (direct route only).
    ``forwarded_for``: send it as ``X-Forwarded-For`` (the target must trust the proxy).
    """

    client: str | None = None
    source: str | None = None
    forwarded_for: str | None = None

    def __post_init__(self) -> None:
        if self.source is not None and self.forwarded_for is not None:
            raise ConstraintError("give `source` or `forwarded_for`, not both", "forwarded_for")
        if self.source is None and self.forwarded_for is None:
            raise ConstraintError("give `source` (a 127.x.y.z address) or `forwarded_for`")
        if self.source is not None:
            try:
                source = ipaddress.IPv4Address(self.source)
            except ValueError:
                raise ConstraintError(
                    f"`source` {self.source!r} is not an IPv4 address", "source"
                ) from None
            if source not in _LOOPBACK:
                raise ConstraintError(
                    f"`source` {self.source!r} is not a loopback address (127.0.0.0/8); the"
                    " harness only ever connects over loopback",
                    "source",
                )
        if self.forwarded_for is not None:
            try:
                ipaddress.ip_address(self.forwarded_for)
            except ValueError:
                raise ConstraintError(
                    f"`forwarded_for` {self.forwarded_for!r} is not an IP address",
                    "forwarded_for",
                ) from None


class Resume(_Step, tag="resume", frozen=True, kw_only=True):
    """Reconnect and resume the client's session; ``expect`` is the outcome it must get."""

    client: str | None = None
    expect: Literal["full", "degraded", "rejected", "unreachable", "any"] = "full"
    reason: NonEmptyStr | None = None
    warnings: tuple[str, ...] | None = None
    timeout: Duration = _seconds(5.0)
    token: Literal["current", "previous"] = "current"
    """``previous``: present the resume token the client held before its last resume, as a
    thief replaying a stolen token would; a correct target revokes the session."""
    session_of: str | None = None
    """Take over another client's session: resume it from this client's connection."""
    node: NodeNumber | None = None
    """On a cluster target (``nodes``), the node this resume goes to; without it, the node
    after the one the client's previous connection went to."""

    def __post_init__(self) -> None:
        if self.reason is not None and self.expect != "rejected":
            raise ConstraintError(
                f"`reason` only goes with `expect: rejected` (this step expects {self.expect})",
                "reason",
            )
        if self.warnings is not None and self.expect != "degraded":
            raise ConstraintError(
                f"`warnings` only go with `expect: degraded` (this step expects {self.expect})",
                "warnings",
            )


class Race(_Step, tag="race", frozen=True, kw_only=True):
    """Present resumes of one client's session from several clients at the same instant.

    Each client in ``clients`` takes the session, token and position ``session_of`` holds, and
    all of them resume it at once, each on a connection of its own (on a cluster target, client
    i to node ``nodes[i]``, or by default to node i). One attempt each, no retry. The step holds
    when at most one of them still holds the session at its end; every other one was refused,
    a resume that lost the race with the reason ``lost`` and a hint of when to retry, or was
    accepted and then closed by the target (§7.5 of docs/protocol.md); and no client lost,
    doubled or reordered a delivery. The one that holds the session then sends ``messages``
    and waits for their replies."""

    session_of: NonEmptyStr
    clients: Annotated[tuple[NonEmptyStr, ...], msgspec.Meta(min_length=2, max_length=8)]
    nodes: tuple[NodeNumber, ...] | None = None
    lost: NonEmptyStr = "overloaded"
    """The reason a resume that lost the race is rejected with (the reference: ``overloaded``)."""
    messages: Annotated[int, msgspec.Meta(ge=0, le=100)] = 1
    timeout: Duration = _seconds(5.0)
    """For each resume, and then for each reply."""

    def __post_init__(self) -> None:
        if len(set(self.clients)) != len(self.clients):
            raise ConstraintError("each client races once: `clients` has a name twice", "clients")
        if self.session_of in self.clients:
            raise ConstraintError(
                f"`{self.session_of}` holds the session the others race for; it cannot race",
                "session_of",
            )
        if self.nodes is not None and len(self.nodes) != len(self.clients):
            raise ConstraintError(
                f"`nodes` names one node per client: {len(self.clients)} clients, "
                f"{len(self.nodes)} nodes",
                "nodes",
            )


class KillNode(_Step, tag="kill_node", frozen=True, kw_only=True):
    """SIGKILL one node of a cluster target; its connections die with it."""

    node: NodeNumber


class StartNode(_Step, tag="start_node", frozen=True, kw_only=True):
    """Start a killed node again, with the same node id, port and Redis."""

    node: NodeNumber


StoreLinkHow = Literal["cut", "slow", "blackhole", "heal"]


class StoreLink(_Step, tag="store_link", frozen=True, kw_only=True):
    """Break the cluster's link to Redis (its own Toxiproxy proxy) for ``duration``, or heal it.

    ``cut`` closes every connection to Redis and refuses new ones; ``slow`` adds ``latency``
    both ways; ``blackhole`` lets connections stay open while nothing passes; ``heal`` undoes
    all of it."""

    how: StoreLinkHow
    latency: Duration | None = None
    duration: Duration | None = None

    def __post_init__(self) -> None:
        if self.how == "slow" and self.latency is None:
            raise ConstraintError("`store_link: slow` needs `latency`", "latency")
        if self.how != "slow" and self.latency is not None:
            raise ConstraintError("`latency` only goes with `how: slow`", "latency")
        if self.how == "heal" and self.duration is not None:
            raise ConstraintError("`heal` takes no `duration`", "duration")


class ReconnectFresh(_Step, tag="reconnect_fresh", frozen=True, kw_only=True):
    """Drop the client's session and open a new one, as a user who gave up on resuming would."""

    client: str | None = None


class Snapshot(_Step, tag="snapshot", frozen=True, kw_only=True):
    """Record what the client sees now (history, context, metrics) under ``name``; each of them
    only where the driver (or the target, for metrics) can read it."""

    client: str | None = None
    name: NonEmptyStr


class Repeat(_Step, tag="repeat", frozen=True, kw_only=True):
    """Run ``steps`` ``times`` times in a row."""

    times: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    steps: Annotated[tuple[Step, ...], msgspec.Meta(min_length=1)]


class Once(_Step, tag="once", frozen=True, kw_only=True):
    """Inside ``parallel``: each client waits here until every client of the group has
    reached this step or ended; then ``steps`` run once, for the whole group, and every
    waiting client goes on together (or fails, if they did not hold).

    ``within`` bounds the wait from the first client's arrival: when some client still on
    its way has not arrived by then, ``steps`` do not run and every client's ``once`` fails.
    A client that ended before it came here (its step failed, or it had no steps left) is
    not waited for."""

    within: Duration = _seconds(30.0)
    steps: Annotated[tuple[Step, ...], msgspec.Meta(min_length=1)]


class Parallel(_Step, tag="parallel", frozen=True, kw_only=True):
    """Run ``steps`` for ``clients`` extra clients at once, users named from ``user_prefix``."""

    clients: Annotated[int, msgspec.Meta(ge=1, le=5000)]
    user_prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$")] = "p"
    steps: Annotated[tuple[Step, ...], msgspec.Meta(min_length=1)]


class Expect(_Step, tag="expect", frozen=True, kw_only=True):
    """Check what has happened so far; every given part must hold."""

    client: str | None = None
    history: HistoryExpect | None = None
    context: ContextExpect | None = None
    resume: ResumeExpect | None = None
    latency: tuple[LatencyExpect, ...] = ()
    metrics: tuple[MetricExpect, ...] = ()
    delivery: DeliveryExpect | None = None
    store: StoreExpect | None = None
    must_fail: bool = False
    """Invert the step: it passes only when a check fails. For scenarios that prove the
    harness catches a fault planted in the target (``Scenario.plant_fault``)."""

    def __post_init__(self) -> None:
        parts = (self.history, self.context, self.resume, self.delivery, self.store)
        if all(part is None for part in parts) and not self.latency and not self.metrics:
            raise ConstraintError(
                "give at least one of `history`, `context`, `resume`, `latency`, `metrics`,"
                " `delivery`, `store`"
            )

    @property
    def needs_client(self) -> bool:
        """Whether the checks are about one client (latency and metrics are about the run)."""
        parts = (self.history, self.context, self.resume, self.delivery, self.store)
        return any(part is not None for part in parts)


Step: TypeAlias = (
    Connect
    | Chat
    | Send
    | Drop
    | Fault
    | Heal
    | Wait
    | ChangeIp
    | Resume
    | ReconnectFresh
    | Race
    | KillNode
    | StartNode
    | StoreLink
    | Snapshot
    | Repeat
    | Parallel
    | Once
    | Expect
)

_STEP_CLASSES: Final[tuple[type[_Step], ...]] = (
    Connect,
    Chat,
    Send,
    Drop,
    Fault,
    Heal,
    Wait,
    ChangeIp,
    Resume,
    ReconnectFresh,
    Race,
    KillNode,
    StartNode,
    StoreLink,
    Snapshot,
    Repeat,
    Parallel,
    Once,
    Expect,
)


def step_kinds() -> dict[str, type[_Step]]:
    """Map each step kind, as a YAML file writes it, to its class, in the documented order."""
    return {str(cls.__struct_config__.tag): cls for cls in _STEP_CLASSES}


# --------------------------------------------------------------------------------------------
# Scenario
# --------------------------------------------------------------------------------------------


def _default_clients() -> tuple[ClientSpec, ...]:
    return (ClientSpec(name="client"),)


class Scenario(_Model, frozen=True, kw_only=True):
    """One scenario file: who takes part, under which clock, and the steps to run."""

    name: NonEmptyStr
    description: str = ""
    tags: tuple[str, ...] = ()
    clock: Literal["virtual", "real", "auto"] = "auto"
    timeout: Duration = _seconds(60.0)
    clients: Annotated[tuple[ClientSpec, ...], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=_default_clients
    )
    steps: Annotated[tuple[Step, ...], msgspec.Meta(min_length=1)]
    requires: tuple[NonEmptyStr, ...] = ()
    plant_fault: NonEmptyStr | None = None
    """Start the embedded reference server with this protocol rule broken on purpose, to prove
    the scenario's checks catch it (the names are the embedded target's,
    ``harness.targets.embedded.PLANTED_FAULTS``). Any other target SKIPS the scenario."""
    server_args: tuple[str, ...] = ()
    """Extra options for the embedded reference server (e.g. ``--ip-policy deny``)."""
    nodes: Annotated[int, msgspec.Meta(ge=1, le=8)] = 1
    """Run the embedded reference server as this many nodes sharing one Redis, each behind its
    own proxy; every resume goes to the next node (docs/cluster.md). ``--nodes N`` overrides."""


def iter_steps(steps: tuple[Step, ...]) -> list[Step]:
    """Every step, nested ones (of ``repeat``, ``parallel`` and ``once``) right after their
    parent."""
    out: list[Step] = []
    for step in steps:
        out.append(step)
        if isinstance(step, Repeat | Parallel | Once):
            out.extend(iter_steps(step.steps))
    return out
