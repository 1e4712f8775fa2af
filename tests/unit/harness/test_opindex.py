"""The history index answers what scanning the history answers, for every prefix."""

from __future__ import annotations

import random

from harness import checkers
from harness.history import Connect, Delivered, History, Op, Outcome, SendMessage, Sent
from harness.opindex import OpIndex


def herd_history(clients: int, seed: int = 1) -> History:
    """Clients connecting, taking sessions over, sending and receiving, interleaved."""
    rng = random.Random(seed)
    history = History()
    names = [f"c{i}" for i in range(clients)]
    for _ in range(clients * 12):
        name = rng.choice(names)
        roll = rng.random()
        if roll < 0.25:
            op = history.invoke(name, Connect())
            session = f"s{rng.randrange(clients // 2 + 1)}"  # some share a session (takeover)
            kind = rng.choice(["new", "full", "rejected"])
            history.complete(op, "ok", Outcome(kind=kind, session=session, stream=f"{session}#1"))
        elif roll < 0.6:
            op = history.invoke(name, SendMessage(text=f"{name} says {rng.random():.3f}"))
            history.complete(op, "ok", Sent(message_id=f"m{op}", connected=True))
        else:
            history.event(
                name,
                Delivered(stream=f"s{rng.randrange(3)}#1", position=rng.randrange(9), kind="reply"),
            )
    return history


def scan(ops: list[Op], processes: set[str], start: int, end: int) -> list[Op]:
    return [op for op in ops[start:end] if op.process in processes]


def test_operations_of_processes_match_a_scan_for_every_window() -> None:
    history = herd_history(20)
    index = OpIndex(history)
    ops = history.ops
    rng = random.Random(2)
    for _ in range(300):
        start = rng.randrange(len(ops))
        end = rng.randrange(start, len(ops) + 1)
        wanted = {f"c{rng.randrange(20)}" for _ in range(rng.randrange(1, 4))}
        assert scan(ops, wanted, start, end) == index.of(wanted, start, end)


def test_messages_sent_in_a_session_match_the_checker_for_every_prefix() -> None:
    history = herd_history(10)
    index = OpIndex(history)
    sessions = {op.body.session for op in history.ops if isinstance(op.body, Outcome)}
    for end in range(0, len(history.ops) + 1, 7):
        for session in sessions | {None}:
            expected = checkers.sent_in_session(history.ops[:end], session)
            assert expected == index.sent_in_session(session, end)


def test_the_index_follows_a_growing_history() -> None:
    history = History()
    index = OpIndex(history)
    assert [] == index.of({"a"}, 0, 0)
    op = history.invoke("a", Connect())
    assert [history.ops[0]] == index.of({"a"}, 0, len(history.ops))
    history.complete(op, "ok", Outcome(kind="new", session="s", stream="s#1"))
    assert 2 == len(index.of({"a"}, 0, len(history.ops)))


def test_a_reordered_history_is_indexed_again() -> None:
    """A merge of workers' histories reorders the operations: the index must not keep the
    old positions."""
    history = herd_history(5)
    index = OpIndex(history)
    before = index.of({"c1"}, 0, len(history.ops))
    history.replace(list(reversed(history.ops)))
    after = index.of({"c1"}, 0, len(history.ops))
    assert list(reversed(before)) == after
    assert scan(history.ops, {"c1"}, 0, len(history.ops)) == after
