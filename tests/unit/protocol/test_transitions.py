"""The transition tables and the diagrams drawn from them (docs/protocol.md §3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_server.protocol import LocalProtocolError
from reference_server.protocol.diagram import render, updated
from reference_server.protocol.transitions import (
    CLIENT_TRANSITIONS,
    SESSION_TRANSITIONS,
    TERMINAL_SESSION_STATES,
    ClientInput,
    ClientState,
    SessionState,
    transition,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def test_every_state_has_a_row() -> None:
    """Each table covers every state of its side."""
    assert set(ClientState) == set(CLIENT_TRANSITIONS)
    assert set(SessionState) == set(SESSION_TRANSITIONS)


def test_every_state_is_reachable() -> None:
    """No state is dead code: each is the start state or the target of some move."""
    client_targets = {t for moves in CLIENT_TRANSITIONS.values() for t in moves.values()}
    session_targets = {t for moves in SESSION_TRANSITIONS.values() for t in moves.values()}
    assert set(ClientState) == client_targets | {ClientState.IDLE}
    assert set(SessionState) == session_targets


def test_terminal_session_states_are_the_ones_that_forget() -> None:
    """Expired, revoked and closed sessions accept nothing."""
    assert {
        SessionState.EXPIRED,
        SessionState.REVOKED,
        SessionState.CLOSED,
    } == TERMINAL_SESSION_STATES


def test_a_move_missing_from_the_table_is_a_local_error() -> None:
    """transition() refuses what the table does not allow."""
    with pytest.raises(LocalProtocolError):
        transition(CLIENT_TRANSITIONS, ClientState.IDLE, ClientInput.RECV_RESUMED)


def test_protocol_doc_has_the_current_diagrams() -> None:
    """docs/protocol.md embeds exactly the diagrams the tables produce."""
    text = DOC.read_text(encoding="utf-8")
    assert render() in text
    assert text == updated(text)
