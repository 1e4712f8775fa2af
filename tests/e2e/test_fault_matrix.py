"""The project's suites kill the fault catalogue: a representative slice, in CI time.

The full matrix (every fault against seed, chaos and strength) takes about half an hour and
is measured by hand (docs/faults.md says how). This runs ``harness matrix`` on six faults of
different rules (replay order, tokens, store cleanup, paging, forwarded addresses, streaming)
against five scenarios, through a real Toxiproxy, and asserts that each fault is killed by the
scenario written for it; under a minute on two cores.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from harness.engine import Engine, RunOptions
from harness.matrix import Matrix, fault_matrix
from harness.scenario import load

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy]

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
FILES = (
    "seed/01_basic_history.yaml",
    "chaos/token_reuse_attack.yaml",
    "chaos/expired_session_is_deleted.yaml",
    "strength/01_replay_backlog.yaml",
    "strength/13_untrusted_forwarder.yaml",
)

# fault -> the scenarios of FILES that must catch it (others may as well)
KILLERS = {
    "swap_replay": {"a blackholed reply is replayed exactly, twice in a row"},
    "reusable_token": {"a replayed resume token revokes the session"},
    "rows_left_after_expiry": {"an expired session leaves nothing in the store"},
    "next_before_off_by_one": {"basic reconnection preserves conversation history"},
    "trust_any_forwarder": {"a forwarding header from an untrusted peer is ignored"},
    "final_flag_early": {
        "basic reconnection preserves conversation history",
        "a blackholed reply is replayed exactly, twice in a row",
    },
}


@pytest.fixture(scope="module")
def matrix() -> Matrix:
    """The matrix of the slice, run once for the module."""
    loaded = [(SCENARIOS / name, load(SCENARIOS / name)) for name in FILES]

    async def run() -> Matrix:
        async with Engine(RunOptions(jobs=2)) as engine:
            return await fault_matrix(engine, loaded, list(KILLERS))

    return asyncio.run(run())


def test_every_scenario_of_the_slice_passes_clean(matrix: Matrix) -> None:
    """No scenario is left out: each passes against the honest server, so its failures below
    are the faults' doing."""
    assert {} == matrix.left_out
    assert len(FILES) == len(matrix.scenarios)


@pytest.mark.parametrize("fault", sorted(KILLERS))
def test_each_fault_is_killed_by_the_scenario_written_for_it(matrix: Matrix, fault: str) -> None:
    """The fault makes its scenarios fail (not error), with the scenario's own evidence."""
    killed = set(matrix.killed_by(fault))
    assert KILLERS[fault] <= killed, {s: matrix.cells[(fault, s)].status for s in matrix.scenarios}
    for scenario in KILLERS[fault]:
        failure = matrix.cells[(fault, scenario)].first_failure
        assert failure is not None, scenario
        assert failure.seen, scenario


def test_the_slice_kills_the_whole_slice_of_the_catalogue(matrix: Matrix) -> None:
    """No survivor, and no cell errored: every verdict is the target's."""
    assert ([], 1.0) == (matrix.survivors, matrix.kill_rate)
    errored = [k for k, r in matrix.cells.items() if r.status == "error"]
    assert [] == errored
