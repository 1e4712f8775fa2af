"""Every state transition of the protocol, for both sides, as data (docs/protocol.md §3).

The state machines in ``client.py`` and ``session.py`` move only through ``transition()``,
which looks the move up here; a move that is not in a table is a ``LocalProtocolError``.
``diagram.py`` draws the state diagrams in docs/protocol.md from these same tables.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from .errors import LocalProtocolError


class _Member(Enum):
    """The enums here hash by identity, as their members compare: Enum's own ``__hash__`` is
    a Python function, called at every ``state in SOME_SET`` (seven a request on the server
    under the throughput load, cProfile call counts)."""

    __hash__ = object.__hash__


class ClientState(_Member):
    """Where a client is, as seen by the client (§3.1)."""

    IDLE = "idle"  # no session
    CONNECTING = "connecting"  # hello sent, waiting for welcome
    ATTACHED = "attached"  # session open on this connection
    DISCONNECTED = "disconnected"  # session held by the server, connection gone
    RESUMING = "resuming"  # resume sent, waiting for resumed
    CLOSED = "closed"  # session gone for good: expired, revoked, taken over, bye


class ClientInput(_Member):
    """What moves a client."""

    SEND_HELLO = "send hello"
    SEND_RESUME = "send resume"
    RECV_WELCOME = "recv welcome"
    RECV_RESUMED = "recv resumed"
    RECV_REJECTED_RETRYABLE = "recv rejected (retryable)"
    RECV_REJECTED_FINAL = "recv rejected (final)"
    RECV_CLOSING = "recv closing (resumable)"
    RECV_CLOSING_FINAL = "recv closing (final)"
    CONNECTION_LOST = "connection lost"
    SEND_BYE = "send bye"


class SessionState(_Member):
    """Where a session is, as seen by the server (§3.2)."""

    ATTACHED = "attached"  # a connection carries the session
    DETACHED = "detached"  # no connection; resumable until its windows pass
    EXPIRED = "expired"  # the resumable window passed; state is deleted
    REVOKED = "revoked"  # a resume token was reused; state is deleted
    CLOSED = "closed"  # the client said bye; state is deleted


class SessionInput(_Member):
    """What moves a session."""

    CONNECTION_LOST = "connection lost"
    RESUME_ACCEPTED = "resume accepted"
    RESUME_REFUSED = "resume refused"
    TAKEN_OVER = "taken over"
    WINDOW_PASSED = "resumable window passed"
    TOKEN_REUSED = "token reused"
    RECV_BYE = "recv bye"


S = ClientState
I = ClientInput  # noqa: E741 - the table reads better with one-letter names

CLIENT_TRANSITIONS: dict[ClientState, dict[ClientInput, ClientState]] = {
    S.IDLE: {I.SEND_HELLO: S.CONNECTING},
    S.CONNECTING: {
        I.RECV_WELCOME: S.ATTACHED,
        I.RECV_REJECTED_RETRYABLE: S.IDLE,
        I.RECV_REJECTED_FINAL: S.IDLE,
        I.CONNECTION_LOST: S.IDLE,
    },
    S.ATTACHED: {
        I.CONNECTION_LOST: S.DISCONNECTED,
        I.RECV_CLOSING: S.DISCONNECTED,
        I.RECV_CLOSING_FINAL: S.CLOSED,
        I.SEND_BYE: S.CLOSED,
    },
    S.DISCONNECTED: {
        I.SEND_RESUME: S.RESUMING,
        I.SEND_HELLO: S.CONNECTING,
        I.CONNECTION_LOST: S.DISCONNECTED,
    },
    S.RESUMING: {
        I.RECV_RESUMED: S.ATTACHED,
        I.RECV_REJECTED_RETRYABLE: S.DISCONNECTED,
        I.RECV_REJECTED_FINAL: S.CLOSED,
        I.CONNECTION_LOST: S.DISCONNECTED,
    },
    S.CLOSED: {I.SEND_HELLO: S.CONNECTING, I.CONNECTION_LOST: S.CLOSED},
}

T = SessionState
E = SessionInput

SESSION_TRANSITIONS: dict[SessionState, dict[SessionInput, SessionState]] = {
    T.ATTACHED: {
        E.CONNECTION_LOST: T.DETACHED,
        E.TAKEN_OVER: T.ATTACHED,
        E.TOKEN_REUSED: T.REVOKED,
        E.RESUME_REFUSED: T.ATTACHED,
        E.RECV_BYE: T.CLOSED,
    },
    T.DETACHED: {
        E.RESUME_ACCEPTED: T.ATTACHED,
        E.RESUME_REFUSED: T.DETACHED,
        E.TOKEN_REUSED: T.REVOKED,
        E.WINDOW_PASSED: T.EXPIRED,
    },
    T.EXPIRED: {},
    T.REVOKED: {},
    T.CLOSED: {},
}

# A session in one of these states holds nothing and accepts no resume.
TERMINAL_SESSION_STATES = frozenset(s for s, moves in SESSION_TRANSITIONS.items() if not moves)

_State = TypeVar("_State", bound=Enum)
_Input = TypeVar("_Input", bound=Enum)


def transition(table: dict[_State, dict[_Input, _State]], state: _State, event: _Input) -> _State:
    """Return the state that ``event`` leads to from ``state``, or raise ``LocalProtocolError``."""
    try:
        return table[state][event]
    except KeyError:
        raise LocalProtocolError(
            f"{event.value!r} is not allowed in state {state.value!r}"
        ) from None
