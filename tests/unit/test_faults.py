"""Planted faults: one list of names, one plan per name, each breaking only its own rule."""

from __future__ import annotations

import typing

import pytest

from reference_server.__main__ import _parser
from reference_server.config import ServerConfig
from reference_server.faults import PLANTED_FAULTS, FaultPlan, PlantedFault, fault_plan


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


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, [b"resumed", b"r1", b"r2"]),
        ("skip_replay", [b"resumed", b"r2"]),
        ("duplicate_replay", [b"resumed", b"r1", b"r1", b"r2"]),
    ],
)
def test_replay_faults_change_only_the_replayed_frames(
    name: str | None, expected: list[bytes]
) -> None:
    """skip_replay drops the first replayed frame, duplicate_replay sends it twice."""
    plan = fault_plan(name)
    assert expected == plan.resumed(None, [b"resumed", b"r1", b"r2"])  # type: ignore[arg-type]
    assert [b"resumed"] == plan.resumed(None, [b"resumed"])  # type: ignore[arg-type]
