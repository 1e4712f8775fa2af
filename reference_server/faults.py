"""Planted faults: the reference server with one protocol rule broken on purpose.

For testing test harnesses only (``--plant-fault NAME``): a harness that cannot see these
faults cannot be trusted to see them in a server no one here wrote. The server calls its
``FaultPlan`` at four named points; the default plan changes nothing, and each planted fault is
a subclass that overrides one of them. Nothing else in the server knows a fault exists.

``PLANTED_FAULTS`` is the one list of names: the command line and the harness's scenario
validation both read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from reference_server.protocol import codec
from reference_server.protocol.messages import Resume, Resumed, Welcome

if TYPE_CHECKING:
    from reference_server.protocol import ServerSession

PlantedFault = Literal[
    "skip_replay", "duplicate_replay", "never_expire", "ignore_ip_policy", "reusable_token"
]
PLANTED_FAULTS: tuple[PlantedFault, ...] = PlantedFault.__args__  # type: ignore[attr-defined]


class FaultPlan:
    """No fault: every hook returns what it was given. The server's named points:

    - ``resume_request``: a resume about to be decided;
    - ``policy_address``: the client address the IP policy is applied to;
    - ``welcomed`` / ``resumed``: the frames a hello or an accepted resume queued, before the
      connection sends anything else;
    - ``before_tick``: a session about to be swept (heartbeats, expiry).
    """

    name: PlantedFault | None = None

    def resume_request(self, session: ServerSession, resume: Resume) -> Resume:
        """The resume the session will decide."""
        return resume

    def policy_address(self, session: ServerSession, client_ip: str) -> str:
        """The address the session compares with the one it last saw (§10)."""
        return client_ip

    def welcomed(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        """The frames a new session sends first: its welcome."""
        return frames

    def resumed(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        """The frames an accepted resume sends first: resumed, the replay, a notice."""
        return frames

    def before_tick(self, session: ServerSession, now: float) -> None:
        """Called by the sweeper before ``session.tick(now)``."""


class SkipReplay(FaultPlan):
    """The first replayed message is never sent: the client sees a gap."""

    name = "skip_replay"

    def resumed(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        if len(frames) < 2:  # resumed only: nothing replayed to break
            return frames
        return [frames[0], *frames[2:]]


class DuplicateReplay(FaultPlan):
    """The first replayed message is sent twice: the client sees a duplicate."""

    name = "duplicate_replay"

    def resumed(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        if len(frames) < 2:
            return frames
        return [frames[0], frames[1], *frames[1:]]


class NeverExpire(FaultPlan):
    """A detached session's gap never grows, so it never degrades or expires (§8)."""

    name = "never_expire"

    def before_tick(self, session: ServerSession, now: float) -> None:
        if session.detached_at is not None:
            session.detached_at = now


class IgnoreIpPolicy(FaultPlan):
    """A resume from another address looks like one from the same address (§10)."""

    name = "ignore_ip_policy"

    def policy_address(self, session: ServerSession, client_ip: str) -> str:
        return session.client_ip


class ReusableToken(FaultPlan):
    """Any resume token ever issued for a session works, as if tokens never rotated (§7.2.1)."""

    name = "reusable_token"

    def __init__(self) -> None:
        self._issued: dict[str, list[str]] = {}

    def resume_request(self, session: ServerSession, resume: Resume) -> Resume:
        issued = self._issued.get(session.session_id, [])
        if resume.resume_token not in issued:
            return resume
        return Resume(
            versions=resume.versions,
            session_id=resume.session_id,
            resume_token=issued[-1],
            epoch=resume.epoch,
            last_seq=resume.last_seq,
        )

    def welcomed(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        self._remember(session, frames)
        return frames

    def resumed(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        self._remember(session, frames)
        return frames

    def _remember(self, session: ServerSession, frames: list[bytes]) -> None:
        first = codec.decode_server(frames[0]) if frames else None
        if isinstance(first, Welcome | Resumed):
            self._issued.setdefault(session.session_id, []).append(first.resume_token)


_PLANS: dict[str, type[FaultPlan]] = {
    plan.name: plan
    for plan in (SkipReplay, DuplicateReplay, NeverExpire, IgnoreIpPolicy, ReusableToken)
    if plan.name is not None
}


def fault_plan(name: str | None) -> FaultPlan:
    """The plan for a planted fault's name; ``None`` is the protocol as specified."""
    if name is None:
        return FaultPlan()
    try:
        return _PLANS[name]()
    except KeyError:
        raise ValueError(f"unknown planted fault {name!r}; known: {PLANTED_FAULTS}") from None
