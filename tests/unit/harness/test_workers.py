"""How the engine decides to spread a `parallel` group, and how it merges the histories."""

from __future__ import annotations

import textwrap

import pytest

from harness.engine import fds_needed, raise_fd_limit
from harness.history import Done, History, Op, RealWait
from harness.scenario import load_text
from harness.scenario import model as m
from harness.workers import IDS_PER_WORKER, Spread, merge, stays_in_one_process

pytestmark = [pytest.mark.timeout(5)]


def group(steps: str, clients: int = 1000) -> m.Parallel:
    """The `parallel` step of a scenario whose group runs ``steps`` (YAML)."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "        ")
    text = f"name: t\nsteps:\n  - parallel:\n      clients: {clients}\n      steps:\n{body}\n"
    (step,) = load_text(text).steps
    assert isinstance(step, m.Parallel)
    return step


SPREAD = Spread(workers=2, driver="reference", toxiproxy_url="http://127.0.0.1:1")


def test_a_herd_with_its_outage_in_once_is_spread() -> None:
    """The clients' own steps in workers; the outage of `once` in the parent."""
    herd = group(
        """
        - connect:
        - chat: 1
        - once:
            steps:
              - drop: {how: proxy_down, duration: 5s}
              - expect:
                  metrics: [{name: ws_connections, value: "== 0"}]
        - resume: full
        - expect: {delivery: {}}
        """
    )
    assert None is stays_in_one_process(herd, "real")
    assert (2, "1000 clients in 2 worker processes") == SPREAD.split(herd, "real")


@pytest.mark.parametrize(
    ("steps", "why"),
    [
        ("- drop: {how: proxy_down, duration: 5s}", "its `drop` step acts on the fault layer"),
        ("- fault: {toxic: latency, latency: 1s}", "its `fault` step acts on the fault layer"),
        ("- drop: server_restart", "its `drop` step restarts the target"),
        ("- expect: {latency: [{operation: connect, p50: '< 1s'}]}", "judges the run as a whole"),
        ("- repeat: {times: 2, steps: [heal: ]}", "its `heal` step acts on the fault layer"),
        (
            "- once: {steps: [expect: {latency: [{operation: connect, p50: '< 1s'}]}]}",
            "its `once` step judges latencies of the whole run",
        ),
    ],
)
def test_a_group_whose_clients_act_on_the_shared_world_stays(steps: str, why: str) -> None:
    """Steps of the clients that reach the fault layer, the target or the whole run's
    history keep the group in one process, with the reason."""
    herd = group(f"- connect:\n{steps}")
    found = stays_in_one_process(herd, "real")
    assert found is not None
    assert why in found
    assert 1 == SPREAD.split(herd, "real")[0]


def test_waits_stay_with_the_virtual_clock_only() -> None:
    """A `wait` in a group moves the target's clock when the clock is virtual."""
    herd = group("- connect:\n- wait: 5s")
    assert None is stays_in_one_process(herd, "real")
    assert "moves the target's clock" in (stays_in_one_process(herd, "virtual") or "")


def test_small_groups_and_one_worker_stay() -> None:
    """Below the threshold, or with one worker, nothing is spread."""
    small = group("- connect:", clients=10)
    assert (1, "10 clients, fewer than the 500 worth a worker") == SPREAD.split(small, "real")
    one = Spread(workers=1, driver="reference", toxiproxy_url="")
    assert 1 == one.split(group("- connect:"), "real")[0]


def op(index: int, op_id: int, time: float, process: str = "p") -> Op:
    return Op(index=index, id=op_id, process=process, phase="event", time=time, body=Done())


def test_merge_orders_by_time_and_numbers_again() -> None:
    """Lines of the parent and of two workers, interleaved in time; each process's own order
    kept for equal times; indexes 0.. again; ids untouched."""
    history = History([op(0, 1, 0.0, "fault"), op(1, 2, 5.0, "fault")])
    first = [op(0, IDS_PER_WORKER, 1.0, "a"), op(1, IDS_PER_WORKER + 1, 5.0, "a")]
    second = [op(0, 2 * IDS_PER_WORKER, 0.5, "b"), op(1, 2 * IDS_PER_WORKER + 1, 9.0, "b")]
    merge(history, [first, second])
    assert [0, 1, 2, 3, 4, 5] == [o.index for o in history.ops]
    assert [
        1,
        2 * IDS_PER_WORKER,
        IDS_PER_WORKER,
        2,
        IDS_PER_WORKER + 1,
        2 * IDS_PER_WORKER + 1,
    ] == [o.id for o in history.ops]


def test_a_worker_history_keeps_the_parents_clock_and_its_own_ids() -> None:
    """A history made with the parent's origin gives times on the parent's scale, and ids
    from its own range."""
    parent = History()
    worker = History(origin=parent.origin, first_id=IDS_PER_WORKER)
    op_id = worker.invoke("a", RealWait(seconds=1.0))
    assert IDS_PER_WORKER == op_id
    assert abs(parent.now() - worker.now()) < 0.01


def test_fd_limit_is_raised_to_the_hard_limit_and_a_herd_costs_two_per_connection() -> None:
    """The soft limit ends at the hard one (when the hard one can be set), and 1000
    connections need about 2256 descriptors in Toxiproxy."""
    soft, hard = raise_fd_limit()
    assert soft == hard
    assert 2256 == fds_needed(1000)
