"""The driver contract: the only part of the harness that knows a target's protocol.

A driver is one simulated client of one target. The runner calls it and records every call
and its result into the history; the driver reports what it observes on its own (deliveries
at stream positions, notices, closes, protocol violations) through the ``observe`` callback it
is given, and never writes the history itself. Checkers judge only the history.

A driver declares, in ``DriverInfo``:

- its **capabilities** (``CAPABILITIES`` below): a scenario step that needs one it lacks is
  SKIPPED with the reason before the scenario starts, never after;
- its **positions**: how the positions in ``Delivered`` order (``dense`` integers with no
  holes, ``increasing`` integers that may skip, or ``opaque`` strings that only identify), and
  whether they continue across sessions (Centrifugo's offsets, within one epoch) or start
  again with each session (the reference protocol's ``seq``).

docs/architecture.md describes the contract; ``harness.driver.conformance`` checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

from harness.history import Observation, Outcome, Terms, Turn

if TYPE_CHECKING:
    from harness.scenario.model import Scenario
    from harness.targets.base import Target

__all__ = [
    "CAPABILITIES",
    "ClientConfig",
    "Driver",
    "DriverError",
    "DriverFactory",
    "DriverInfo",
    "EmbeddedTargets",
    "Observe",
    "Outcome",
    "PositionModel",
    "RawAnswer",
    "Route",
    "Terms",
    "Turn",
]

CAPABILITIES: Final[dict[str, str]] = {
    "chat": "send a message and wait for the complete reply to it",
    "resume": "resume a session after its connection was lost",
    "resume_previous_token": "present a resume credential already used (a replayed theft)",
    "take_over": "resume another client's session from this client's connection",
    "history": "read the conversation the server stores",
    "history_pages": "read the stored conversation in pages of a size the scenario chooses",
    "context": "read the agent context the server stores",
    "raw_frames": "send a frame exactly as written, and report the error or close it got",
    "resend": "send a message already answered again, under its own number or a new one",
    "source_ip": "open connections from a chosen loopback address",
    "forwarded_for": "send an X-Forwarded-For header",
    "notices": "report the notices the server sends about a session (e.g. an IP change)",
    "close_reason": "report the reason the server gave for closing a connection",
}
"""Every capability a driver may declare, with what it promises."""


class DriverError(Exception):
    """The driver could not do what was asked: refused, timed out, broken by the network."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the target asked the client to wait, if it said."""


@dataclass(frozen=True, slots=True)
class PositionModel:
    """How a driver's stream positions behave."""

    order: Literal["dense", "increasing", "opaque"]
    """``dense``: integers, each next one exactly one more (a hole is a loss). ``increasing``:
    integers that only grow (holes are allowed). ``opaque``: identifiers with no order."""
    continues_across_sessions: bool
    """Whether a new session's stream goes on from the old one's positions."""


@dataclass(frozen=True, slots=True)
class DriverInfo:
    """What a driver is and can do."""

    name: str
    positions: PositionModel
    capabilities: frozenset[str]
    description: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(self.capabilities - CAPABILITIES.keys())
        if unknown:
            raise ValueError(f"driver {self.name}: unknown capabilities {unknown}")


@dataclass(frozen=True, slots=True)
class Route:
    """How the next connection goes: the TCP address to open (a proxy in front of the URL's
    host, or None for the host itself), the source address, and an X-Forwarded-For value."""

    connect_to: tuple[str, int] | None = None
    source_ip: str | None = None
    forwarded_for: str | None = None


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """What a raw frame got: the error code answered (if any) and the close code (if closed)."""

    error: str | None
    close: int | None


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What a driver is told about the client it plays."""

    name: str
    url: str
    credential: str
    route: Route = field(default_factory=Route)


Observe = Callable[[Observation], None]
"""How a driver reports what it observed; the runner records it in the history."""


@runtime_checkable
class Driver(Protocol):
    """One simulated client of a target. Every method that waits takes its bound."""

    info: DriverInfo

    @property
    def connected(self) -> bool:
        """Whether the client holds a live connection now."""
        ...

    async def connect(self, timeout: float) -> Outcome:
        """One attempt to open a new session; ``DriverError`` when it could not be made."""
        ...

    async def resume(
        self,
        timeout: float,
        *,
        token: Literal["current", "previous"] = "current",
        session_of: Driver | None = None,
    ) -> Outcome:
        """One attempt to resume the session; with ``token="previous"``, present the credential
        held before the last resume (a replayed theft) without disturbing this client's own
        state; with ``session_of``, take over that driver's session."""
        ...

    async def send_message(self, text: str) -> str:
        """Send one user message (or queue it while disconnected); return its id."""
        ...

    async def await_reply(self, message_id: str, timeout: float) -> int:
        """Wait for the complete reply to ``message_id``; return how many parts it had."""
        ...

    async def resend(self, message_id: str, *, renumber: bool, timeout: float) -> None:
        """Send message ``message_id`` again with the same id: under its original number, or
        (``renumber``) under a new one, as a client that restarted would; return once the
        target has answered everything sent before (so its answer, if any, was observed)."""
        ...

    async def fetch_history(self, timeout: float, *, page_size: int | None = None) -> list[Turn]:
        """Every stored turn of the session's conversation, oldest first; a driver with
        ``history_pages`` reads it in pages of ``page_size`` turns (its own size if None)."""
        ...

    async def fetch_context(self, timeout: float) -> Mapping[str, Any]:
        """The agent context the server stores for the session."""
        ...

    async def disconnect(self, how: Literal["close", "reset"]) -> None:
        """Close the connection cleanly, or reset it (RST) as a broken network would."""
        ...

    async def send_raw(
        self, frame: str | bytes, timeout: float, *, until_close: bool = False
    ) -> RawAnswer:
        """Send a frame as is; wait for the first error answered (or, with ``until_close``,
        for the connection to close), at most ``timeout``."""
        ...

    def set_route(self, route: Route) -> None:
        """Use this route from the next connection on."""
        ...

    async def aclose(self) -> None:
        """Drop every connection and stop every task of this driver."""
        ...


class DriverFactory(Protocol):
    """What a driver plugin's entry point gives: the info, and a way to make clients.

    Two optional attributes extend it (the engine looks them up with ``getattr``):
    ``embedded`` (an ``EmbeddedTargets``: a real server of the driver's kind the harness can
    start itself, used when no ``--target`` is given) and ``clock_control(url, admin_token)``
    (moves an external target's clock)."""

    info: DriverInfo

    def __call__(self, config: ClientConfig, observe: Observe) -> Driver: ...


class EmbeddedTargets(Protocol):
    """How a driver kit starts a server of its own kind for a scenario (one per scenario)."""

    def capabilities(self, *, virtual_clock: bool) -> frozenset[str]:
        """What such a target can do (``harness.targets.base.TARGET_CAPABILITIES``)."""
        ...

    def target(self, scenario: Scenario, *, virtual_clock: bool) -> Target:
        """A not yet started target for ``scenario``."""
        ...
