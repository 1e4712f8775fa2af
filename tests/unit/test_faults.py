"""Planted faults: one list of names, one plan per name, each breaking only its own rule."""

from __future__ import annotations

import typing

import pytest

from reference_server.__main__ import _parser
from reference_server.config import ServerConfig
from reference_server.faults import PLANTED_FAULTS, FaultPlan, PlantedFault, fault_plan
from reference_server.protocol import ServerSession, codec
from reference_server.protocol.messages import Hello, ReplyChunk, Resume, Welcome


def test_every_planted_fault_name_has_its_plan() -> None:
    """Each name of PLANTED_FAULTS builds a plan of that name; None builds the honest plan."""
    assert list(PLANTED_FAULTS) == [fault_plan(name).name for name in PLANTED_FAULTS]
    assert type(fault_plan(None)) is FaultPlan
    assert set(typing.get_args(PlantedFault)) == set(PLANTED_FAULTS)


def test_an_unknown_fault_is_refused_with_the_known_names() -> None:
    """A name that is not planted is a ValueError listing the ones that are."""
    with pytest.raises(ValueError, match="skip_replay"):
        fault_plan("wrong_seq")


def test_the_command_line_offers_exactly_the_planted_faults() -> None:
    """--plant-fault takes its choices from PLANTED_FAULTS."""
    action = next(a for a in _parser()._actions if a.dest == "plant_fault")
    assert tuple(PLANTED_FAULTS) == tuple(action.choices or ())
    assert all(ServerConfig(planted_fault=name).planted_fault == name for name in PLANTED_FAULTS)


def _resume_frames(replayed: int) -> list[bytes]:
    """What an accepted resume queues when ``replayed`` messages are unacknowledged."""
    session = ServerSession(
        session_id="s1", user_id="alice", epoch="e1", client_ip="127.0.0.1", now=0.0
    )
    session.welcome(Hello(versions=(2,)))
    token = codec.decode_server(session.data_to_send()[0])
    assert isinstance(token, Welcome)
    for n in range(replayed):
        session.send(
            lambda seq, n=n: ReplyChunk(
                seq=seq, in_reply_to="u1", chunk_index=n, text="x", final=False
            )
        )
    session.connection_lost(1.0)
    resume = Resume(
        versions=(2,), session_id="s1", resume_token=token.resume_token, epoch="e1", last_seq=0
    )
    session.resume(resume, now=2.0, user_id="alice", client_ip="127.0.0.1")
    return session.data_to_send()


def _seqs(frames: list[bytes]) -> list[int | None]:
    return [getattr(codec.decode_server(frame), "seq", None) for frame in frames]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, [None, 1, 2, 3]),
        ("skip_replay", [None, 2, 3]),
        ("duplicate_replay", [None, 1, 1, 2, 3]),
        ("swap_replay", [None, 2, 1, 3]),
        ("replay_lost_tail", [None, 1, 2]),
    ],
)
def test_replay_faults_change_only_the_replayed_frames(
    name: str | None, expected: list[int | None]
) -> None:
    """Each replay fault changes the replayed frames after ``resumed`` as its name says."""
    plan = fault_plan(name)
    assert expected == _seqs(plan.attached(None, _resume_frames(3)))  # type: ignore[arg-type]
    assert [None] == _seqs(plan.attached(None, _resume_frames(0)))  # type: ignore[arg-type]
