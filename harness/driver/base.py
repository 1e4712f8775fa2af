"""The driver interface: what the runner and the checkers may ask of any target.

It is deliberately protocol-neutral. A driver for the reference protocol, for Centrifugo's
history recovery or for Socket.IO's connection state recovery answers the same questions:
open a session, resume it, chat, fetch the server's history and context, and report what was
delivered (by stream position) so that loss, duplication and order can be checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

OutcomeKind = Literal["new", "full", "degraded", "rejected"]


class DriverError(Exception):
    """The driver could not do what was asked (connection refused, timeout, protocol error)."""

    retry_after: float | None = None
    """Seconds the target asked the client to wait, if it said."""


@dataclass(frozen=True, slots=True)
class Terms:
    """What a target advertises about its sessions; None where it advertises nothing."""

    full_window_s: float | None = None
    resumable_window_s: float | None = None
    ip_policy: str | None = None
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a connect or resume ended."""

    kind: OutcomeKind
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    gap_s: float | None = None
    replayed: int | None = None
    missed: tuple[int, int] | None = None
    """Positions the target declared lost (inclusive), if it declared any."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message the client received, at its position in the server's stream."""

    position: int
    kind: str
    reply_to: str | None = None
    text: str | None = None
    final: bool = False


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored turn of the conversation, as the server answered it."""

    index: int
    role: str
    message_id: str
    text: str


@dataclass
class Anomalies:
    """What the driver saw that a correct server never causes."""

    duplicates: list[int] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)


class Driver(Protocol):
    """One client of a target."""

    name: str
    terms: Terms | None
    deliveries: list[Delivery]
    anomalies: Anomalies
    security_notices: list[dict[str, str]]

    @property
    def connected(self) -> bool: ...

    async def connect(self, timeout: float, *, retry: bool = True) -> Outcome:
        """Open a new session; with ``retry``, back off and try again until ``timeout``."""
        ...

    async def resume(
        self,
        timeout: float,
        *,
        retry: bool = True,
        token: Literal["current", "previous"] = "current",
        session_of: Any = None,
    ) -> Outcome:
        """Resume the session (or, with ``token="previous"``, replay the token held before the
        last resume; with ``session_of``, take over another driver's session)."""
        ...

    @property
    def closed_reason(self) -> str | None:
        """The reason the target gave when it last closed this client's connection."""
        ...

    async def send_message(self, text: str) -> str: ...

    async def await_reply(self, message_id: str, timeout: float) -> list[Delivery]: ...

    async def fetch_history(self, timeout: float) -> list[Turn]: ...

    async def fetch_context(self, timeout: float) -> Mapping[str, Any]: ...

    async def disconnect(self, how: Literal["close", "reset"]) -> None: ...

    async def send_raw(
        self, frame: str | bytes, timeout: float, *, until_close: bool = False
    ) -> tuple[str | None, int | None]:
        """Send a frame as is; return the error code answered (if any) and the close code.

        With ``until_close``, wait for the connection to close rather than for the first error.
        """
        ...

    def set_route(
        self,
        *,
        connect_to: tuple[str, int] | None,
        source_ip: str | None,
        forwarded_for: str | None,
    ) -> None: ...
