"""Planted faults: the reference server with one protocol rule broken on purpose.

For testing test harnesses only (``--plant-fault NAME``): a harness that cannot see these
faults cannot be trusted to see them in a server no one here wrote. Each fault is a bug a real
server could ship, planted alone; docs/faults.md describes each and what catches it.

The server calls its ``FaultPlan`` at a few named points (the hooks below, each called from
one place); the default plan changes nothing, and each planted fault is a subclass that
overrides one or two of them. Nothing else in the server knows a fault exists.

``PLANTED_FAULTS`` is the one list of names: the command line and the harness's scenario
validation both read it.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from reference_server import agent, wire
from reference_server.protocol import (
    CloseCode,
    DuplicateRequest,
    RequestReceived,
    SessionState,
    codec,
)
from reference_server.protocol.messages import (
    Resume,
    Resumed,
    SecurityNotice,
    UserMessage,
    Welcome,
)
from reference_server.protocol.tokens import hash_token
from reference_server.store import HistoryPage, MemoryStore, SqliteStore

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from reference_server.config import ServerConfig
    from reference_server.protocol import ServerSession, SessionEvent
    from reference_server.protocol.messages import ClientMessage, Closing
    from reference_server.registry import SessionHost
    from reference_server.store import Store

PlantedFault = Literal[
    # replay (§5, §7.2)
    "skip_replay",
    "duplicate_replay",
    "swap_replay",
    "replay_off_by_one",
    "replay_lost_tail",
    # windows and outcomes (§8)
    "full_after_window",
    "degraded_without_warning",
    "expire_early",
    "never_expire",
    "wrong_gap_s",
    # tokens and the owner check (§7.2, §7.2.1)
    "no_token_rotation",
    "reusable_token",
    "reuse_not_revoking",
    "subject_not_checked",
    # takeover (§7.3)
    "takeover_not_closed",
    "takeover_silent",
    # heartbeats (§9)
    "no_heartbeat_timeout",
    "heartbeat_too_early",
    # client addresses and the IP policy (§10, §10.1)
    "ignore_ip_policy",
    "ip_policy_not_enforced",
    "trust_any_forwarder",
    # cleanup (§8.3)
    "rows_left_after_expiry",
    # deduplication (§6, §6.1)
    "resent_processed_twice",
    # history pages (§11.2)
    "next_before_off_by_one",
    "page_missing_entry",
    # streamed replies (§11.1)
    "final_flag_early",
    "chunks_out_of_order",
    "chunk_lost",
    # durability across a restart (§8, §8.1)
    "context_lost_on_restart",
    "history_lost_on_restart",
    "epoch_changed_on_restart",
    # notices (§10, §5)
    "notice_not_replayed",
    # performance
    "slow_resume",
    "memory_leak",
]
PLANTED_FAULTS: tuple[PlantedFault, ...] = PlantedFault.__args__  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True, slots=True)
class ResumeInput:
    """What a resume is decided on: the message, who presents it, and from where."""

    resume: Resume
    subject: str
    """The subject of the handshake credential (§7.2 check 4)."""
    client_ip: str
    """The address the IP policy compares with the session's (§10)."""


class Chunk(msgspec.Struct, frozen=True):
    """One piece of a streamed reply as it will be numbered and sent (§11.1). A Struct, not a
    NamedTuple, whose ``__new__`` is a Python function called for every chunk."""

    chunk_index: int
    text: str
    final: bool


class FaultPlan:
    """No fault: every hook returns what it was given. The server's named points, each
    called from one place:

    - ``configure`` (app): the server's configuration, once at start;
    - ``restored`` (registry): a session just loaded from the store after a restart;
    - ``resume_request`` (registry): a resume about to be decided, with its credential's
      subject and the client address;
    - ``resume_delay_s`` (registry): a pause before a resume is decided;
    - ``attached`` (registry): the frames a hello or an accepted resume queued (welcome, or
      resumed, the replay and a notice), before the connection sends anything else;
    - ``taken_over`` (registry): how a connection whose session was taken over is closed;
    - ``received`` (connection): the events one client frame led to;
    - ``reply_chunks`` (application): the pieces of an agent reply, before they are numbered;
    - ``history_page`` (application): a page of history read from the store, before it is sent;
    - ``before_tick`` (sweeper): a session about to be swept (heartbeats, expiry);
    - ``delete`` (registry): a session that ended is deleted from the store.
    """

    name: PlantedFault | None = None

    def configure(self, config: ServerConfig) -> ServerConfig:
        """The configuration the server runs with."""
        return config

    def restored(self, host: SessionHost) -> None:
        """Called for each session loaded back from the store at start (§8)."""

    def resume_request(
        self, session: ServerSession, request: ResumeInput, now: float
    ) -> ResumeInput:
        """The resume, subject and address the session decides on at ``now`` (§7.2, §10)."""
        return request

    def resume_delay_s(self, session: ServerSession) -> float:
        """Seconds to wait before deciding a resume."""
        return 0.0

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        """The frames a hello or an accepted resume sends first."""
        return frames

    def taken_over(
        self, session: ServerSession, old: ServerConnection, closing: Closing
    ) -> Coroutine[Any, Any, None] | None:
        """How the connection a takeover displaced ends (§7.3); None: it is left open."""
        return wire.close_with(old, closing)

    def received(
        self, session: ServerSession, message: ClientMessage, events: list[SessionEvent]
    ) -> list[SessionEvent]:
        """What the server acts on after one client message (§6)."""
        return events

    def reply_chunks(self, session: ServerSession, chunks: list[Chunk]) -> list[Chunk]:
        """The pieces of a reply, in the order they will be numbered and sent (§11.1)."""
        return chunks

    def history_page(self, session: ServerSession, page: HistoryPage) -> HistoryPage:
        """A page of history as it will be sent (§11.2)."""
        return page

    def before_tick(self, session: ServerSession, now: float) -> None:
        """Called by the sweeper before ``session.tick(now)``."""

    def delete(self, store: Store, session_id: str, reason: str, at: float) -> None:
        """Delete an ended session from the store, leaving its tombstone (§8.3)."""
        store.delete(session_id, reason, at)


# --- helpers ---------------------------------------------------------------------------------


def _split_resumed(frames: list[bytes]) -> tuple[Resumed | None, list[bytes], list[bytes]]:
    """An accepted resume's frames as (resumed, the replay, what follows: a notice)."""
    first = codec.decode_server(frames[0]) if frames else None
    if not isinstance(first, Resumed):
        return None, [], frames[1:]
    count = first.replay_count
    return first, frames[1 : 1 + count], frames[1 + count :]


def _rewrite_resumed(frames: list[bytes], **changes: Any) -> list[bytes]:
    """The same frames with fields of the ``resumed`` frame changed."""
    resumed, replay, rest = _split_resumed(frames)
    if resumed is None:
        return frames
    return [codec.encode(msgspec.structs.replace(resumed, **changes)), *replay, *rest]


def _with_replay(frames: list[bytes], replay: list[bytes]) -> list[bytes]:
    """The same frames with the replay between ``resumed`` and the rest replaced."""
    resumed, _, rest = _split_resumed(frames)
    return [frames[0], *replay, *rest] if resumed is not None else frames


# --- replay (§5, §7.2) -----------------------------------------------------------------------


class SkipReplay(FaultPlan):
    """The first replayed message is never sent: the client sees a gap."""

    name = "skip_replay"

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        _, replay, _ = _split_resumed(frames)
        return _with_replay(frames, replay[1:]) if replay else frames


class DuplicateReplay(FaultPlan):
    """The first replayed message is sent twice: the client sees a duplicate."""

    name = "duplicate_replay"

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        _, replay, _ = _split_resumed(frames)
        return _with_replay(frames, [replay[0], *replay]) if replay else frames


class SwapReplay(FaultPlan):
    """The first two replayed messages are sent in each other's place (a replay read from an
    unordered map): the client sees them out of order."""

    name = "swap_replay"

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        _, replay, _ = _split_resumed(frames)
        if len(replay) < 2:
            return frames
        return _with_replay(frames, [replay[1], replay[0], *replay[2:]])


class ReplayOffByOne(FaultPlan):
    """The replay starts one message after the client's ``last_seq`` (``>`` written for
    ``>=``), and ``replay_from`` says so without declaring the skipped one ``missed``."""

    name = "replay_off_by_one"

    def resume_request(
        self, session: ServerSession, request: ResumeInput, now: float
    ) -> ResumeInput:
        resume = request.resume
        if resume.epoch != session.epoch or resume.last_seq + 1 >= session.next_seq:
            return request  # nothing unacknowledged to skip
        shifted = msgspec.structs.replace(resume, last_seq=resume.last_seq + 1)
        return dataclasses.replace(request, resume=shifted)


class ReplayLostTail(FaultPlan):
    """The last message of a replay of two or more is never sent (the replay loop stops one
    short); ``replay_count`` still counts it."""

    name = "replay_lost_tail"

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        _, replay, _ = _split_resumed(frames)
        return _with_replay(frames, replay[:-1]) if len(replay) >= 2 else frames


# --- windows and outcomes (§8) ---------------------------------------------------------------


class FullAfterWindow(FaultPlan):
    """A resume past the full window is reported ``full``, with no warning and nothing
    declared missed, although nothing was replayed."""

    name = "full_after_window"

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        resumed, _, _ = _split_resumed(frames)
        if resumed is None or not any(w.code == "replay_window_passed" for w in resumed.warnings):
            return frames
        return _rewrite_resumed(frames, outcome="full", warnings=(), missed=None)


class DegradedWithoutWarning(FaultPlan):
    """A ``degraded`` resume carries no warning saying why (§4.6)."""

    name = "degraded_without_warning"

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        resumed, _, _ = _split_resumed(frames)
        if resumed is None or resumed.outcome != "degraded":
            return frames
        return _rewrite_resumed(frames, warnings=())


class ExpireEarly(FaultPlan):
    """A detached session expires once the *full* window has passed, not the resumable one:
    a 2 min gap is ``session_expired`` instead of ``degraded``."""

    name = "expire_early"

    def _shorten(self, session: ServerSession, now: float) -> None:
        windows = session.config.windows
        if session.detached_at is not None and session.gap(now) > windows.full_s:
            session.detached_at = now - windows.resumable_s - 1.0

    def before_tick(self, session: ServerSession, now: float) -> None:
        self._shorten(session, now)

    def resume_request(
        self, session: ServerSession, request: ResumeInput, now: float
    ) -> ResumeInput:
        self._shorten(session, now)
        return request


class NeverExpire(FaultPlan):
    """A detached session's gap never grows, so it never degrades or expires (§8)."""

    name = "never_expire"

    def before_tick(self, session: ServerSession, now: float) -> None:
        if session.detached_at is not None:
            session.detached_at = now


class WrongGapS(FaultPlan):
    """``gap_s`` is reported in milliseconds (§8): a 5 s gap says 5000."""

    name = "wrong_gap_s"

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        resumed, _, _ = _split_resumed(frames)
        if resumed is None:
            return frames
        return _rewrite_resumed(frames, gap_s=round(resumed.gap_s * 1000, 3))


# --- tokens and the owner check (§7.2, §7.2.1) -----------------------------------------------


class NoTokenRotation(FaultPlan):
    """A resume hands back the token that was presented: the token never rotates, so a
    token once stolen works for ever (§7.2.1)."""

    name = "no_token_rotation"

    def __init__(self) -> None:
        self._presented: dict[str, str] = {}

    def resume_request(
        self, session: ServerSession, request: ResumeInput, now: float
    ) -> ResumeInput:
        self._presented[session.session_id] = request.resume.resume_token
        return request

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        token = self._presented.pop(session.session_id, None)
        resumed, _, _ = _split_resumed(frames)
        if resumed is None or token is None:
            return frames
        # The session keeps the presented token as its only one: nothing to commit or retire.
        session._token_hash = hash_token(token)
        session._previous_hash = None
        return _rewrite_resumed(frames, resume_token=token)


class ReusableToken(FaultPlan):
    """Any resume token ever issued for a session works, as if tokens never rotated (§7.2.1)."""

    name = "reusable_token"

    def __init__(self) -> None:
        self._issued: dict[str, list[str]] = {}

    def resume_request(
        self, session: ServerSession, request: ResumeInput, now: float
    ) -> ResumeInput:
        issued = self._issued.get(session.session_id, [])
        if request.resume.resume_token not in issued:
            return request
        resume = msgspec.structs.replace(request.resume, resume_token=issued[-1])
        return dataclasses.replace(request, resume=resume)

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        first = codec.decode_server(frames[0]) if frames else None
        if isinstance(first, Welcome | Resumed):
            self._issued.setdefault(session.session_id, []).append(first.resume_token)
        return frames


class ReuseNotRevoking(FaultPlan):
    """A consumed token presented again is refused as ``token_invalid`` and the session lives
    on: the server checks tokens but detects no theft (§7.2.1)."""

    name = "reuse_not_revoking"

    def resume_request(
        self, session: ServerSession, request: ResumeInput, now: float
    ) -> ResumeInput:
        if hash_token(request.resume.resume_token) not in session._used_hashes:
            return request
        resume = msgspec.structs.replace(request.resume, resume_token="not-a-token")
        return dataclasses.replace(request, resume=resume)


class SubjectNotChecked(FaultPlan):
    """A resume is accepted whoever's credential comes with it, as long as the token is
    right: another user can take the session (§7.2 check 4, §15)."""

    name = "subject_not_checked"

    def resume_request(
        self, session: ServerSession, request: ResumeInput, now: float
    ) -> ResumeInput:
        return dataclasses.replace(request, subject=session.user_id)


# --- takeover (§7.3) -------------------------------------------------------------------------


class TakeoverNotClosed(FaultPlan):
    """The connection a takeover displaced is left open and told nothing (§7.3)."""

    name = "takeover_not_closed"

    def taken_over(
        self, session: ServerSession, old: ServerConnection, closing: Closing
    ) -> Coroutine[Any, Any, None] | None:
        return None


class TakeoverSilent(FaultPlan):
    """The connection a takeover displaced is closed with a bare 1000, without the
    ``closing`` that says why (§7.3)."""

    name = "takeover_silent"

    def taken_over(
        self, session: ServerSession, old: ServerConnection, closing: Closing
    ) -> Coroutine[Any, Any, None] | None:
        return old.close(CloseCode.NORMAL)


# --- heartbeats (§9) -------------------------------------------------------------------------


class NoHeartbeatTimeout(FaultPlan):
    """The server pings but never gives up on a silent connection: a half-open connection
    holds its session attached until the network says otherwise (§9)."""

    name = "no_heartbeat_timeout"

    def before_tick(self, session: ServerSession, now: float) -> None:
        if session.state is SessionState.ATTACHED:
            session.last_heard = now


class HeartbeatTooEarly(FaultPlan):
    """A connection silent for one and a half ping intervals is closed with 4007, long
    before ``timeout_s`` (§9): an idle client that would have answered the next ping is cut."""

    name = "heartbeat_too_early"

    def before_tick(self, session: ServerSession, now: float) -> None:
        heartbeat = session.config.heartbeat
        if (
            session.state is SessionState.ATTACHED
            and now - session.last_heard >= 1.5 * heartbeat.interval_s
        ):
            session.last_heard = now - heartbeat.timeout_s


# --- client addresses and the IP policy (§10, §10.1) -----------------------------------------


class IgnoreIpPolicy(FaultPlan):
    """A resume from another address looks like one from the same address (§10)."""

    name = "ignore_ip_policy"

    def resume_request(
        self, session: ServerSession, request: ResumeInput, now: float
    ) -> ResumeInput:
        return dataclasses.replace(request, client_ip=session.client_ip)


class IpPolicyNotEnforced(FaultPlan):
    """The configured IP policy (``deny``, ``require_reauth``) is advertised in welcome but
    sessions act under ``allow``: a resume from another address gets its notice and goes
    through (§10)."""

    name = "ip_policy_not_enforced"

    def _allow(self, session: ServerSession) -> None:
        session.config = dataclasses.replace(session.config, ip_policy="allow")

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        if frames and isinstance(codec.decode_server(frames[0]), Welcome):
            self._allow(session)  # after the welcome advertised the real policy
        return frames

    def restored(self, host: SessionHost) -> None:
        self._allow(host.session)


class TrustAnyForwarder(FaultPlan):
    """``X-Forwarded-For`` is believed from any peer, not only from a trusted proxy (§10.1):
    a client names its own address."""

    name = "trust_any_forwarder"

    def configure(self, config: ServerConfig) -> ServerConfig:
        return dataclasses.replace(config, trusted_proxies=("0.0.0.0/0", "::/0"))


# --- cleanup (§8.3) --------------------------------------------------------------------------


class RowsLeftAfterExpiry(FaultPlan):
    """An expired session's tombstone is written and its session, replay and request-id rows
    deleted, but its conversation history and agent context stay in the store (§8.3): the
    delete forgets two tables. Nothing on the wire shows it."""

    name = "rows_left_after_expiry"

    def delete(self, store: Store, session_id: str, reason: str, at: float) -> None:
        if reason != "expired":
            store.delete(session_id, reason, at)
        elif isinstance(store, SqliteStore):
            _delete_sqlite_keeping_history(store, session_id, reason, at)
        elif isinstance(store, MemoryStore):
            store._tombstones[session_id] = (reason, at)  # and the session's data stays
        else:
            store.delete(session_id, reason, at)


def _delete_sqlite_keeping_history(
    store: SqliteStore, session_id: str, reason: str, at: float
) -> None:
    db = store._db
    db.execute("PRAGMA foreign_keys = OFF")  # the rows left behind reference the session
    try:
        db.execute("BEGIN IMMEDIATE")
        for table, column in (("replay", "session_id"), ("request_ids", "session_id")):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (session_id,))
        db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        db.execute(
            "INSERT INTO tombstones (session_id, reason, at) VALUES (?, ?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET reason = excluded.reason, at = excluded.at",
            (session_id, reason, at),
        )
        db.execute("COMMIT")
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.execute("PRAGMA foreign_keys = ON")
    store._highest_seq.pop(session_id, None)
    store._request_ids_from.pop(session_id, None)


# --- deduplication (§6, §6.1) ----------------------------------------------------------------


class ResentProcessedTwice(FaultPlan):
    """A user message sent again under an id the server already processed (the same seq
    after a drop, or a new one) is processed again: a second reply, a second turn (§6)."""

    name = "resent_processed_twice"

    def received(
        self, session: ServerSession, message: ClientMessage, events: list[SessionEvent]
    ) -> list[SessionEvent]:
        if not isinstance(message, UserMessage):
            return events
        if not events:  # a seq already processed: the session only acked it
            return [RequestReceived(message)]
        return [RequestReceived(message) if isinstance(e, DuplicateRequest) else e for e in events]


# --- history pages (§11.2) -------------------------------------------------------------------


class NextBeforeOffByOne(FaultPlan):
    """``next_before`` is one too high, so each next page repeats the oldest entry of the
    page before it (§11.2)."""

    name = "next_before_off_by_one"

    def history_page(self, session: ServerSession, page: HistoryPage) -> HistoryPage:
        if page.next_before is None:
            return page
        return dataclasses.replace(page, next_before=page.next_before + 1)


class PageMissingEntry(FaultPlan):
    """A page that has older entries before it leaves out its oldest entry, while
    ``next_before`` still points past it: one entry per page boundary is never sent (§11.2)."""

    name = "page_missing_entry"

    def history_page(self, session: ServerSession, page: HistoryPage) -> HistoryPage:
        if page.next_before is None or len(page.entries) < 2:
            return page
        return dataclasses.replace(page, entries=page.entries[1:])


# --- streamed replies (§11.1) ----------------------------------------------------------------


class FinalFlagEarly(FaultPlan):
    """The last two chunks of a reply are both marked ``final`` (``>=`` for ``==``): the
    reply looks complete one chunk early, and a chunk follows its end (§11.1)."""

    name = "final_flag_early"

    def reply_chunks(self, session: ServerSession, chunks: list[Chunk]) -> list[Chunk]:
        last = len(chunks) - 1
        return [msgspec.structs.replace(c, final=i >= last - 1) for i, c in enumerate(chunks)]


class ChunksOutOfOrder(FaultPlan):
    """The first two chunks of a reply are numbered and sent in each other's place: the
    client assembles the reply in the wrong order (§11.1)."""

    name = "chunks_out_of_order"

    def reply_chunks(self, session: ServerSession, chunks: list[Chunk]) -> list[Chunk]:
        return [chunks[1], chunks[0], *chunks[2:]] if len(chunks) >= 2 else chunks


class ChunkLost(FaultPlan):
    """The second chunk of a reply is never numbered or sent, while the history stores the
    whole reply: the client's reply has a hole no sequence number shows (§11.1)."""

    name = "chunk_lost"

    def reply_chunks(self, session: ServerSession, chunks: list[Chunk]) -> list[Chunk]:
        return [chunks[0], *chunks[2:]] if len(chunks) >= 3 else chunks


# --- durability across a restart (§8, §8.1) --------------------------------------------------


class ContextLostOnRestart(FaultPlan):
    """After a restart the agent works from an empty context (its working copy is not
    reloaded from the store): the stored context survives until the next turn overwrites it."""

    name = "context_lost_on_restart"

    def restored(self, host: SessionHost) -> None:
        host.context = agent.new_context()


class HistoryLostOnRestart(FaultPlan):
    """After a restart the conversation's turn counter starts again at 0 (not reloaded from
    the store): the next turns overwrite the oldest stored ones."""

    name = "history_lost_on_restart"

    def restored(self, host: SessionHost) -> None:
        host.history_len = 0


class EpochChangedOnRestart(FaultPlan):
    """Every session loaded after a restart gets a new epoch although its replay buffer was
    stored: resumes after a restart are ``degraded`` with ``epoch_changed`` (§8.1)."""

    name = "epoch_changed_on_restart"

    def restored(self, host: SessionHost) -> None:
        if host.session.state is SessionState.DETACHED:
            host.session.change_epoch(secrets.token_hex(4))


# --- notices (§10, §5) -----------------------------------------------------------------------


class NoticeNotReplayed(FaultPlan):
    """A security notice is numbered and sent but not kept for replay: lost with the
    connection if it drops before the client acknowledges the notice (§10, §5)."""

    name = "notice_not_replayed"

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        _, _, rest = _split_resumed(frames)
        notices = {
            message.seq
            for message in map(codec.decode_server, rest)
            if isinstance(message, SecurityNotice)
        }
        if notices:
            kept = [(seq, frame) for seq, frame in session._replay if seq not in notices]
            session._replay.clear()
            session._replay.extend(kept)
        return frames


# --- performance -----------------------------------------------------------------------------


class SlowResume(FaultPlan):
    """Every resume waits 700 ms before it is decided (a synchronous lookup on the resume
    path): about a hundred times a normal resume, still under any absolute bound of 1 s."""

    name = "slow_resume"

    def resume_delay_s(self, session: ServerSession) -> float:
        return 0.7


LEAK_PER_RESUME_BYTES = 2 * 1024 * 1024


class MemoryLeak(FaultPlan):
    """Every accepted resume keeps 2 MiB that nothing frees (a per-connection buffer kept in
    a list): the server's resident memory grows with each reconnection cycle."""

    name = "memory_leak"

    def __init__(self) -> None:
        self._kept: list[bytes] = []

    def attached(self, session: ServerSession, frames: list[bytes]) -> list[bytes]:
        if frames and isinstance(codec.decode_server(frames[0]), Resumed):
            self._kept.append(bytes([len(self._kept) % 251 + 1]) * LEAK_PER_RESUME_BYTES)
        return frames


_PLANS: dict[str, type[FaultPlan]] = {
    plan.name: plan
    for plan in (
        SkipReplay,
        DuplicateReplay,
        SwapReplay,
        ReplayOffByOne,
        ReplayLostTail,
        FullAfterWindow,
        DegradedWithoutWarning,
        ExpireEarly,
        NeverExpire,
        WrongGapS,
        NoTokenRotation,
        ReusableToken,
        ReuseNotRevoking,
        SubjectNotChecked,
        TakeoverNotClosed,
        TakeoverSilent,
        NoHeartbeatTimeout,
        HeartbeatTooEarly,
        IgnoreIpPolicy,
        IpPolicyNotEnforced,
        TrustAnyForwarder,
        RowsLeftAfterExpiry,
        ResentProcessedTwice,
        NextBeforeOffByOne,
        PageMissingEntry,
        FinalFlagEarly,
        ChunksOutOfOrder,
        ChunkLost,
        ContextLostOnRestart,
        HistoryLostOnRestart,
        EpochChangedOnRestart,
        NoticeNotReplayed,
        SlowResume,
        MemoryLeak,
    )
    if plan.name is not None
}


def describe(name: str) -> str:
    """What planted fault ``name`` breaks, in one paragraph: its plan's docstring."""
    try:
        plan = _PLANS[name]
    except KeyError:
        raise ValueError(f"unknown planted fault {name!r}; known: {PLANTED_FAULTS}") from None
    return " ".join((plan.__doc__ or "").split("\n\n", 1)[0].split()).replace("``", "`")


def fault_plan(name: str | None) -> FaultPlan:
    """The plan for a planted fault's name; ``None`` is the protocol as specified."""
    if name is None:
        return FaultPlan()
    try:
        return _PLANS[name]()
    except KeyError:
        raise ValueError(f"unknown planted fault {name!r}; known: {PLANTED_FAULTS}") from None
