"""The server side of the protocol for one session, sans-I/O (docs/protocol.md §3.2, §5-§10).

A ``ServerSession`` outlives connections. The asyncio layer feeds it decoded client messages,
tells it when its connection is lost, calls ``tick(now)`` on a timer, and sends whatever
``data_to_send()`` returns on the session's current connection. It reads no clock: every
method that needs the time takes ``now`` (seconds, from whatever clock the server runs on).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from . import codec
from .addresses import canonical, same_address
from .errors import REJECTION_CLOSE_CODES, CloseCode, ErrorCode, RemoteProtocolError
from .events import (
    ByeReceived,
    DuplicateRequest,
    HeartbeatTimedOut,
    RequestReceived,
    ResumeAccepted,
    ResumeRefused,
    ResumeResult,
    SessionEvent,
    SessionExpired,
)
from .messages import (
    SUPPORTED_VERSIONS,
    Ack,
    Bye,
    ClientMessage,
    Closing,
    Duplicate,
    GetAgentContext,
    GetConversationHistory,
    Heartbeat,
    Hello,
    IpPolicy,
    Limits,
    Ping,
    Pong,
    Rejected,
    RejectReason,
    Resume,
    Resumed,
    ResumeOutcome,
    ResumeWarning,
    SecurityNotice,
    SeqRange,
    ServerSequenced,
    UserMessage,
    Welcome,
    Windows,
)
from .tokens import TokenFactory, hash_token, new_token, same_hash
from .transitions import (
    SESSION_TRANSITIONS,
    TERMINAL_SESSION_STATES,
    SessionInput,
    SessionState,
    transition,
)

CAPABILITY_REPLAY = "replay"
CAPABILITY_HISTORY_PAGING = "history_paging"
CAPABILITY_VIRTUAL_CLOCK = "virtual_clock"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What a server advertises and enforces for every session (§8, §9, §10, §12)."""

    windows: Windows = field(default_factory=lambda: Windows(full_s=30.0, resumable_s=300.0))
    heartbeat: Heartbeat = field(default_factory=lambda: Heartbeat(interval_s=10.0, timeout_s=30.0))
    limits: Limits = field(
        default_factory=lambda: Limits(
            max_frame_bytes=codec.DEFAULT_MAX_FRAME_BYTES, replay_buffer_max=1024
        )
    )
    ip_policy: IpPolicy = "allow"
    capabilities: tuple[str, ...] = (CAPABILITY_REPLAY, CAPABILITY_HISTORY_PAGING)
    used_tokens_kept: int = 64
    """How many consumed token hashes a session remembers to detect reuse (§7.2.1)."""
    request_ids_kept: int = 1024
    """§6.1: the ids of the requests of the last this-many client seqs are remembered."""
    frames_per_s: float = 1000.0
    """§12.1: the rate limit the I/O layer enforces, advertised from version 2 on."""
    frame_burst: int = 2000
    """§12.1: the burst the I/O layer allows, advertised from version 2 on."""
    reauth_max_age_s: float = 60.0
    """§10: under ``require_reauth``, a credential issued this recently counts as
    re-authentication; advertised from version 2 on."""

    def __post_init__(self) -> None:
        if not 0 <= self.windows.full_s <= self.windows.resumable_s:
            raise ValueError("windows: need 0 <= full_s <= resumable_s")
        if not 0 < self.heartbeat.interval_s < self.heartbeat.timeout_s:
            raise ValueError("heartbeat: need 0 < interval_s < timeout_s")
        if self.limits.replay_buffer_max < 1 or self.limits.max_frame_bytes < 256:
            raise ValueError("limits: replay_buffer_max >= 1 and max_frame_bytes >= 256")
        if self.request_ids_kept < 1:
            raise ValueError("request_ids_kept: need at least 1")
        if not (self.frames_per_s > 0 and self.frame_burst >= 1 and self.reauth_max_age_s >= 0):
            raise ValueError("need frames_per_s > 0, frame_burst >= 1, reauth_max_age_s >= 0")


class SessionSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A session's protocol state, for a durable store; the replay frames and processed
    request ids are stored apart, since they change one at a time."""

    session_id: str
    user_id: str
    epoch: str
    client_ip: str
    state: str
    next_seq: int
    acked_seq: int
    last_client_seq: int
    detached_at: float | None
    token_hash: str
    previous_hash: str | None
    used_hashes: tuple[str, ...]
    replay_overflow_upto: int
    last_heard: float = 0.0
    previous_epochs: tuple[str, ...] = ()


def negotiate_version(versions: tuple[int, ...]) -> int | None:
    """Return the highest version both sides speak, or None (§4.1)."""
    common = set(versions) & set(SUPPORTED_VERSIONS)
    return max(common) if common else None


def rejection(
    reason: RejectReason, message: str, retry_after_ms: int | None = None
) -> ResumeRefused:
    """Build the answer to a hello or resume refused before any session was touched."""
    return ResumeRefused(
        rejected=Rejected(reason=reason, message=message, retry_after_ms=retry_after_ms),
        close_code=REJECTION_CLOSE_CODES[reason],
        revoked=False,
        close_current=None,
    )


class ServerSession:
    """One session's protocol state on the server."""

    def __init__(
        self,
        *,
        session_id: str,
        user_id: str,
        epoch: str,
        client_ip: str,
        now: float,
        config: SessionConfig | None = None,
        token_factory: TokenFactory = new_token,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.epoch = epoch
        self.client_ip = canonical(client_ip)
        self.config = config or SessionConfig()
        self.state = SessionState.ATTACHED
        self.connection_id = 0
        """Bumped on every attach, so the I/O layer can tell its connections apart."""
        self.next_seq = 1
        self.acked_seq = 0
        """The highest server seq the client acknowledged (§5)."""
        self.last_client_seq = 0
        """The highest client seq processed (§6)."""
        self.detached_at: float | None = None
        self.last_heard = now
        self.previous_epochs: tuple[str, ...] = ()
        """Epochs this session had before its current one, oldest first (§8.1)."""
        self.processed_ids: OrderedDict[str, int] = OrderedDict()
        """Processed request ids, each with its client seq, oldest first; bounded (§6.1)."""
        self._token_factory = token_factory
        self._token_hash = ""
        self._previous_hash: str | None = None  # still valid until the client's first frame
        self._used_hashes: deque[str] = deque(maxlen=self.config.used_tokens_kept)
        self._replay: deque[tuple[int, bytes]] = deque()
        self._replay_overflow_upto = 0  # highest seq dropped from a full replay buffer
        self._outbox: list[bytes] = []
        self._ack_pending = False
        self._ping_nonce = 0
        self._last_ping_sent = now

    # --- persistence ---------------------------------------------------------------------

    def snapshot(self) -> SessionSnapshot:
        """Return what a durable store keeps of this session (besides replay frames and ids)."""
        return SessionSnapshot(
            session_id=self.session_id,
            user_id=self.user_id,
            epoch=self.epoch,
            client_ip=self.client_ip,
            state=self.state._value_,  # the member's own attribute: .value is a slow property
            next_seq=self.next_seq,
            acked_seq=self.acked_seq,
            last_client_seq=self.last_client_seq,
            detached_at=self.detached_at,
            token_hash=self._token_hash,
            previous_hash=self._previous_hash,
            used_hashes=tuple(self._used_hashes),
            replay_overflow_upto=self._replay_overflow_upto,
            last_heard=self.last_heard,
            previous_epochs=self.previous_epochs,
        )

    @classmethod
    def restore(
        cls,
        snapshot: SessionSnapshot,
        *,
        replay: Iterable[tuple[int, bytes]],
        processed_ids: Iterable[tuple[str, int] | str],
        now: float,
        config: SessionConfig | None = None,
        token_factory: TokenFactory = new_token,
    ) -> ServerSession:
        """Rebuild a session from a store after a restart. A session that was attached when
        the server stopped is detached as of the restore (§8): the server notices the drop only
        now, and its windows count from now, as they would for any drop it noticed late. A
        session that was already detached keeps the moment of its drop."""
        session = cls(
            session_id=snapshot.session_id,
            user_id=snapshot.user_id,
            epoch=snapshot.epoch,
            client_ip=snapshot.client_ip,
            now=now,
            config=config,
            token_factory=token_factory,
        )
        state = SessionState(snapshot.state)
        session.state = SessionState.DETACHED if state is SessionState.ATTACHED else state
        session.detached_at = snapshot.detached_at if snapshot.detached_at is not None else now
        session.last_heard = snapshot.last_heard or now
        session.next_seq = snapshot.next_seq
        session.previous_epochs = snapshot.previous_epochs
        session.acked_seq = snapshot.acked_seq
        session.last_client_seq = snapshot.last_client_seq
        session._token_hash = snapshot.token_hash
        session._previous_hash = snapshot.previous_hash
        session._used_hashes.extend(snapshot.used_hashes)
        session._replay_overflow_upto = snapshot.replay_overflow_upto
        session._replay.extend(replay)
        # An id stored without its seq (an older store) counts as processed at the last seq.
        pairs = [
            (entry, snapshot.last_client_seq) if isinstance(entry, str) else entry
            for entry in processed_ids
        ]
        session.processed_ids.update(sorted(pairs, key=lambda pair: pair[1]))
        session._forget_old_request_ids()
        return session

    # --- opening -------------------------------------------------------------------------

    def welcome(self, hello: Hello) -> None:
        """Queue the welcome for a new session (§7.1); call once, right after construction."""
        version = negotiate_version(hello.versions)
        if version is None:  # the caller checks first; this is a misuse
            raise ValueError("negotiate_version() before welcome()")
        self._outbox.append(
            codec.encode(
                Welcome(
                    protocol_version=version,
                    session_id=self.session_id,
                    resume_token=self._rotate_token(),
                    epoch=self.epoch,
                    windows=self.config.windows,
                    heartbeat=self.config.heartbeat,
                    limits=self._limits(version),
                    ip_policy=self.config.ip_policy,
                    capabilities=self.config.capabilities,
                    client_ip=self.client_ip,
                    reauth_max_age_s=self._reauth_max_age_s(version),
                )
            )
        )

    def _limits(self, version: int) -> Limits:
        """§4.1: version 2 advertises the rate limit and the request-id bound; version 1
        cannot carry them (its decoders reject unknown fields)."""
        limits = self.config.limits
        if version < 2:
            return msgspec.structs.replace(
                limits, frames_per_s=None, frame_burst=None, request_ids_kept=None
            )
        return msgspec.structs.replace(
            limits,
            frames_per_s=self.config.frames_per_s,
            frame_burst=self.config.frame_burst,
            request_ids_kept=self.config.request_ids_kept,
        )

    def _reauth_max_age_s(self, version: int) -> float | None:
        return self.config.reauth_max_age_s if version >= 2 else None

    # --- sending -------------------------------------------------------------------------

    def send(self, build: Callable[[int], ServerSequenced]) -> ServerSequenced:
        """Number a message with the next seq, keep it for replay, and queue it (§5).

        Works while detached too: the message waits in the replay buffer for a resume.
        """
        return self.send_numbered(build(self.next_seq))

    def send_numbered(self, message: ServerSequenced) -> ServerSequenced:
        """``send`` for a message the caller built with ``next_seq`` already (several at
        once: ``next_seq``, ``next_seq + 1``, ...; each must come next when it is sent)."""
        seq = self.next_seq
        if self.state in TERMINAL_SESSION_STATES:
            raise ValueError(f"session {self.session_id} is {self.state.value}")
        if message.seq != seq:
            raise ValueError(f"message built with seq {message.seq}, expected {seq}")
        self.next_seq = seq + 1
        frame = codec.encode(message)
        replay = self._replay
        replay.append((seq, frame))
        if len(replay) > self.config.limits.replay_buffer_max:
            self._replay_overflow_upto = replay.popleft()[0]
        if self.state is SessionState.ATTACHED:
            self._outbox.append(frame)
        return message

    def data_to_send(self) -> list[bytes]:
        """Return and forget the frames queued for the current connection."""
        if self._ack_pending:
            self._outbox.append(codec.encode(Ack(seq=self.last_client_seq)))
            self._ack_pending = False
        frames, self._outbox = self._outbox, []
        return frames

    @property
    def has_data_to_send(self) -> bool:
        """Would ``data_to_send()`` return anything?"""
        return bool(self._outbox) or self._ack_pending

    @property
    def replay_buffer(self) -> tuple[tuple[int, bytes], ...]:
        """The numbered frames the client has not acknowledged yet, oldest first."""
        return tuple(self._replay)

    # --- receiving -----------------------------------------------------------------------

    def receive(self, message: ClientMessage, now: float) -> list[SessionEvent]:
        """Process one message from the attached client; raise ``RemoteProtocolError`` on abuse."""
        if self.state is not SessionState.ATTACHED:
            raise RemoteProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE, f"session is {self.state.value}, not attached"
            )
        self.last_heard = now
        if self._previous_hash is not None:
            self._commit_token_rotation()
        if type(message) is Ack:  # half the frames: before the match's three failed class tests
            self._receive_ack(message.seq)
            return []
        match message:
            case UserMessage() | GetConversationHistory() | GetAgentContext():
                return self._receive_request(message)
            case Ack(seq=seq):
                self._receive_ack(seq)
            case Ping(nonce=nonce):
                self._outbox.append(codec.encode(Pong(nonce=nonce)))
            case Pong():
                pass  # any frame proves liveness; last_heard is already updated
            case Bye():
                self.state = transition(SESSION_TRANSITIONS, self.state, SessionInput.RECV_BYE)
                self._forget()
                return [ByeReceived()]
            case Hello() | Resume():
                raise RemoteProtocolError(
                    ErrorCode.UNEXPECTED_MESSAGE, f"{type(message).__name__} on an open session"
                )
        return []

    def _receive_request(
        self, request: UserMessage | GetConversationHistory | GetAgentContext
    ) -> list[SessionEvent]:
        if request.seq <= self.last_client_seq:  # resent after a drop: already processed (§6)
            self._ack_pending = True
            return []
        if request.seq != self.last_client_seq + 1:
            raise RemoteProtocolError(
                ErrorCode.SEQUENCE_GAP,
                f"client seq {request.seq} after {self.last_client_seq}",
            )
        self.last_client_seq = request.seq
        self._ack_pending = True
        duplicate = request.id in self.processed_ids
        if not duplicate:
            self.processed_ids[request.id] = request.seq
        self._forget_old_request_ids()
        if duplicate:
            self.send(lambda seq: Duplicate(seq=seq, in_reply_to=request.id))
            return [DuplicateRequest(request)]
        return [RequestReceived(request)]

    @property
    def request_ids_from(self) -> int:
        """§6.1: the lowest client seq whose request id is still remembered."""
        return max(1, self.last_client_seq - self.config.request_ids_kept + 1)

    def _forget_old_request_ids(self) -> None:
        # Ids arrive in seq order, so the oldest is always first: O(1) per request.
        oldest = self.request_ids_from
        ids = self.processed_ids
        while ids and next(iter(ids.values())) < oldest:
            ids.popitem(last=False)

    def _receive_ack(self, seq: int) -> None:
        if seq >= self.next_seq:
            raise RemoteProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"ack {seq} for a seq never sent (last {self.next_seq - 1})",
            )
        if seq <= self.acked_seq:
            return
        self.acked_seq = seq
        while self._replay and self._replay[0][0] <= seq:
            self._replay.popleft()

    # --- connection loss, time -----------------------------------------------------------

    def connection_lost(self, now: float) -> None:
        """The attached connection is gone: the session waits for a resume (§8)."""
        self.state = transition(SESSION_TRANSITIONS, self.state, SessionInput.CONNECTION_LOST)
        self.detached_at = now
        self._outbox = []
        self._ack_pending = False

    def tick(self, now: float) -> list[SessionEvent]:
        """Advance time: heartbeats while attached, windows while detached (§8, §9)."""
        if self.state is SessionState.ATTACHED:
            heartbeat = self.config.heartbeat
            if now - self.last_heard >= heartbeat.timeout_s:
                return [HeartbeatTimedOut()]
            if now - self._last_ping_sent >= heartbeat.interval_s:
                self._ping_nonce += 1
                self._last_ping_sent = now
                self._outbox.append(codec.encode(Ping(nonce=self._ping_nonce)))
        elif self.state is SessionState.DETACHED:
            gap = self.gap(now)
            if gap > self.config.windows.resumable_s:
                self.state = transition(SESSION_TRANSITIONS, self.state, SessionInput.WINDOW_PASSED)
                self._forget()
                return [SessionExpired()]
        return []

    def next_tick_at(self) -> float | None:
        """When ``tick()`` next has something to do: the next ping or the heartbeat deadline
        while attached (§9), the end of the resumable window while detached (§8); None once
        the session is terminal. An I/O layer sleeps until then instead of polling."""
        if self.state is SessionState.ATTACHED:
            heartbeat = self.config.heartbeat
            return min(
                self._last_ping_sent + heartbeat.interval_s, self.last_heard + heartbeat.timeout_s
            )
        if self.state is SessionState.DETACHED and self.detached_at is not None:
            return self.detached_at + self.config.windows.resumable_s
        return None

    def change_epoch(self, epoch: str) -> None:
        """Start a new numbering stream (§8.1): the server can no longer replay the old one
        (it lost the replay buffer but kept the session). Numbering goes on from ``next_seq``;
        every earlier message counts as acknowledged; a resume naming the old epoch is
        ``epoch_changed``."""
        if epoch == self.epoch or epoch in self.previous_epochs:
            raise ValueError(f"epoch {epoch!r} was already used by this session")
        self._require_live()
        self.previous_epochs = (*self.previous_epochs, self.epoch)
        self.epoch = epoch
        self.acked_seq = self.next_seq - 1
        self._replay.clear()

    def gap(self, now: float) -> float:
        """Seconds since the connection was lost; 0 while attached."""
        return 0.0 if self.detached_at is None else max(0.0, now - self.detached_at)

    # --- resuming ------------------------------------------------------------------------

    def resume(
        self,
        request: Resume,
        *,
        now: float,
        user_id: str,
        client_ip: str,
        credential_fresh: bool = False,
    ) -> ResumeResult:
        """Decide a resume (§7.2) and, when it is accepted, queue resumed and the replay.

        ``credential_fresh`` says the handshake credential was issued recently enough to count
        as a re-authentication under the ``require_reauth`` IP policy (§10).
        """
        version = negotiate_version(request.versions)
        if version is None:
            return rejection("unsupported_version", f"server speaks versions {SUPPORTED_VERSIONS}")
        if self.state in TERMINAL_SESSION_STATES:
            return self._refuse(_TERMINAL_REASONS[self.state], f"session is {self.state.value}")
        if self.state is SessionState.DETACHED and self.gap(now) > self.config.windows.resumable_s:
            self.state = transition(SESSION_TRANSITIONS, self.state, SessionInput.WINDOW_PASSED)
            self._forget()
            return self._refuse("session_expired", "the resumable window has passed")

        # §7.2 check 4 before the tokens: a consumed token in a stranger's hands must not let
        # the stranger revoke the owner's session.
        if user_id != self.user_id:
            return self._refuse("auth_failed", "credential belongs to another user")
        presented = hash_token(request.resume_token)
        if any(same_hash(used, presented) for used in self._used_hashes):
            return self._revoke()
        current_ok = same_hash(self._token_hash, presented)
        if not current_ok and not same_hash(self._previous_hash, presented):
            return self._refuse("token_invalid", "resume token does not match this session")
        client_ip = canonical(client_ip)
        ip_changed = not same_address(client_ip, self.client_ip)  # §10: canonical forms
        if ip_changed and self.config.ip_policy == "deny":
            return self._refuse(
                "ip_denied", f"resume from {client_ip}, session began at {self.client_ip}"
            )
        if ip_changed and self.config.ip_policy == "require_reauth" and not credential_fresh:
            return self._refuse(
                "reauth_required", f"resume from {client_ip} needs a freshly issued credential"
            )
        same_epoch = request.epoch == self.epoch
        if same_epoch and not self.acked_seq <= request.last_seq < self.next_seq:
            return self._refuse(
                "invalid_resume",
                f"last_seq {request.last_seq} outside [{self.acked_seq}, {self.next_seq - 1}]",
            )
        return self._accept(request, version, now, client_ip, ip_changed, current_ok, same_epoch)

    def _accept(
        self,
        request: Resume,
        version: int,
        now: float,
        client_ip: str,
        ip_changed: bool,
        presented_current: bool,
        same_epoch: bool,
    ) -> ResumeAccepted:
        taken_over = None
        if self.state is SessionState.ATTACHED:
            taken_over = Closing(
                code=CloseCode.SESSION_TAKEN_OVER,
                reason="session_taken_over",
                message="another connection resumed this session",
            )
            self.state = transition(SESSION_TRANSITIONS, self.state, SessionInput.TAKEN_OVER)
        else:
            self.state = transition(SESSION_TRANSITIONS, self.state, SessionInput.RESUME_ACCEPTED)
        gap = self.gap(now)
        warnings: list[ResumeWarning] = []
        missed: SeqRange | None = None
        last_seq = request.last_seq if same_epoch else self.next_seq - 1
        if not same_epoch and request.epoch in self.previous_epochs:
            warnings.append(
                ResumeWarning(
                    code="epoch_changed",
                    message=f"server stream is epoch {self.epoch}, client had {request.epoch}; "
                    "numbered messages of the old epoch cannot be replayed",
                )
            )
            self._replay.clear()
        elif not same_epoch:
            # §8.1: an epoch this session never had (a corrupted client store, say): the
            # client's last_seq means nothing, so what the server still held unacknowledged is
            # declared lost rather than silently taken as received.
            if self.acked_seq < self.next_seq - 1:
                missed = SeqRange(first=self.acked_seq + 1, last=self.next_seq - 1)
            warnings.append(
                ResumeWarning(
                    code="epoch_unknown",
                    message=f"epoch {request.epoch} was never this session's (it is "
                    f"{self.epoch}): unacknowledged messages are declared missed",
                )
            )
            self._replay.clear()
        elif gap > self.config.windows.full_s:
            if last_seq < self.next_seq - 1:
                missed = SeqRange(first=last_seq + 1, last=self.next_seq - 1)
            warnings.append(
                ResumeWarning(
                    code="replay_window_passed",
                    message=f"gap of {gap:.1f} s exceeded the full replay window of "
                    f"{self.config.windows.full_s:g} s: context kept, unacknowledged messages "
                    "not replayed",
                )
            )
            self._replay.clear()
        elif last_seq < self._replay_overflow_upto:
            missed = SeqRange(first=last_seq + 1, last=self._replay_overflow_upto)
            warnings.append(
                ResumeWarning(
                    code="replay_buffer_overflow",
                    message=f"replay buffer holds {self.config.limits.replay_buffer_max} messages; "
                    f"older unacknowledged ones were dropped",
                )
            )
        # The resume implicitly acknowledges everything up to last_seq.
        self.acked_seq = max(self.acked_seq, last_seq)
        while self._replay and self._replay[0][0] <= last_seq:
            self._replay.popleft()
        replay = [frame for _, frame in self._replay]
        replay_from = missed.last + 1 if missed else last_seq + 1
        outcome: ResumeOutcome = "degraded" if warnings else "full"

        token = self._rotate_token_on_resume(presented_current)
        previous_ip, self.client_ip = self.client_ip, client_ip
        self.connection_id += 1
        self.detached_at = None
        self.last_heard = now
        self._last_ping_sent = now
        self._ack_pending = False
        self._outbox = [
            codec.encode(
                Resumed(
                    protocol_version=version,
                    outcome=outcome,
                    session_id=self.session_id,
                    resume_token=token,
                    epoch=self.epoch,
                    replay_from=replay_from,
                    replay_count=len(replay),
                    last_client_seq=self.last_client_seq,
                    missed=missed,
                    warnings=tuple(warnings),
                    gap_s=round(gap, 3),
                    windows=self.config.windows,
                    heartbeat=self.config.heartbeat,
                    limits=self._limits(version),
                    ip_policy=self.config.ip_policy,
                    capabilities=self.config.capabilities,
                    client_ip=client_ip,
                    reauth_max_age_s=self._reauth_max_age_s(version),
                )
            ),
            *replay,
        ]
        if ip_changed:
            policy = self.config.ip_policy
            self.send(
                lambda seq: SecurityNotice(
                    seq=seq,
                    code="ip_changed",
                    previous_ip=previous_ip,
                    current_ip=client_ip,
                    policy=policy,
                )
            )
        return ResumeAccepted(
            outcome=outcome,
            gap_s=gap,
            replayed=len(replay),
            missed=missed,
            ip_changed=ip_changed,
            taken_over=taken_over,
        )

    # --- tokens (§7.2.1) -----------------------------------------------------------------

    def _rotate_token(self) -> str:
        token = self._token_factory()
        self._token_hash = hash_token(token)
        return token

    def _rotate_token_on_resume(self, presented_current: bool) -> str:
        # The presented token stays valid until the client's first frame on this connection
        # proves it received the new one; a drop before that must not look like theft.
        if presented_current:
            if self._previous_hash is not None:
                self._used_hashes.append(self._previous_hash)
            self._previous_hash = self._token_hash
        else:  # the previous token again: the rotated one never arrived, so retire it
            self._used_hashes.append(self._token_hash)
        return self._rotate_token()

    def _commit_token_rotation(self) -> None:
        if self._previous_hash is not None:
            self._used_hashes.append(self._previous_hash)
            self._previous_hash = None

    # --- refusing ------------------------------------------------------------------------

    def _refuse(self, reason: RejectReason, message: str) -> ResumeRefused:
        if self.state not in TERMINAL_SESSION_STATES:
            self.state = transition(SESSION_TRANSITIONS, self.state, SessionInput.RESUME_REFUSED)
        return rejection(reason, message)

    def _revoke(self) -> ResumeRefused:
        was_attached = self.state is SessionState.ATTACHED
        self.state = transition(SESSION_TRANSITIONS, self.state, SessionInput.TOKEN_REUSED)
        self._forget()
        refused = rejection("token_reused", "a resume token was presented twice; session revoked")
        closing = Closing(
            code=CloseCode.SESSION_REVOKED,
            reason="session_revoked",
            message="a resume token of this session was reused",
        )
        return ResumeRefused(
            rejected=refused.rejected,
            close_code=refused.close_code,
            revoked=True,
            close_current=closing if was_attached else None,
        )

    def _forget(self) -> None:
        """Drop everything a dead session held (§8.3)."""
        self._replay.clear()
        self._outbox = []
        self.processed_ids.clear()
        self._token_hash = ""
        self._previous_hash = None

    def _require_live(self) -> None:
        if self.state in TERMINAL_SESSION_STATES:
            raise ValueError(f"session {self.session_id} is {self.state.value}")


_TERMINAL_REASONS: dict[SessionState, RejectReason] = {
    SessionState.EXPIRED: "session_expired",
    SessionState.REVOKED: "session_revoked",
    SessionState.CLOSED: "session_closed",
}
