"""The harness's side of the peer benchmark, as a child process of its own (as Artillery is).

``python -m bench.peer_client --target echo|reference --url URL --rate R --clients V
--turns N --frames F [--hold S]`` starts ``V`` simulated clients, one every ``1/R`` seconds
(Artillery's ``arrivalRate``); each connects, makes ``N`` turns (one frame sent, ``F`` frames
received) and disconnects; with ``--hold S`` it first stays connected ``S`` seconds; with
``--cycles C`` (reference only) it then reconnects ``C - 1`` times, each a ``resume`` of its
session followed by the same turns and disconnect. Every client records every operation in a
``History`` of its own, as the runner does: each call an ``invoke`` and a completion, each frame
received an ``event``; at the end the delivery check runs over each client's history.

- ``reference``: the harness's ``ReferenceDriver`` (``AsyncClient``, ``ClientProtocol``):
  ``connect`` (hello, welcome), then ``send_message`` and ``await_reply`` per turn (the reply's
  chunks and the server's ack are the ``F`` frames), then ``disconnect("close")``. The token is
  read from the environment variable named by ``--token-env``.
- ``echo``: a bare ``websockets`` connection to ``bench.echo_server``, with the same records:
  each received frame a ``Delivered`` at the next position of the connection's stream.

The last stdout line is one JSON object: clients started, completed and failed, the first
errors, frames sent and received, history operations recorded, clients whose delivery check
failed. CPU and memory are measured from outside (``os.wait4`` on this process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

from harness import checkers
from harness.driver.base import ClientConfig, PositionModel
from harness.driver.reference import INFO, ReferenceDriver
from harness.history import (
    AwaitReply,
    Connect,
    Delivered,
    Disconnect,
    Done,
    History,
    Observation,
    Outcome,
    RawAnswer,
    RealWait,
    Replied,
    Resume,
    SendMessage,
    SendRaw,
    Sent,
)

from .throughput import CONNECT_OPTIONS

TEXT = "hello"
REQUEST = b'{"type":"user_message","id":"m1","seq":1,"text":"hello"}'
"""What an echo client sends per turn: the size of a real chat request."""
OPEN_TIMEOUT_S = 30.0
TURN_TIMEOUT_S = 30.0
ECHO_POSITIONS = PositionModel(order="dense", continues_across_sessions=False)


@dataclass
class Tally:
    started: int = 0
    completed: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    received: int = 0
    ops: int = 0
    undelivered: int = 0
    held_peak: int = 0
    held: int = 0


def _checked(history: History, tally: Tally, positions: PositionModel) -> None:
    tally.ops += len(history.ops)
    verdict = checkers.delivery(checkers.client_view(history.ops, "c"), positions)
    if not verdict.passed:
        tally.undelivered += 1
        tally.errors[f"delivery: {verdict.message}"[:120]] += 1


def _hold_begins(tally: Tally) -> None:
    tally.held += 1
    tally.held_peak = max(tally.held_peak, tally.held)


async def reference_client(args: argparse.Namespace, token: str, tally: Tally) -> None:
    """One simulated client of the reference server, recorded as the runner records."""
    history = History()

    def observe(observation: Observation) -> None:
        history.event("c", observation)

    driver = ReferenceDriver(ClientConfig(name="c", url=args.url, credential=token), observe)
    try:
        op = history.invoke("c", Connect())
        outcome = await driver.connect(OPEN_TIMEOUT_S)
        history.complete(op, "ok", outcome)
        if outcome.kind != "new":
            raise RuntimeError(f"connect: {outcome.kind} {outcome.reason}")
        tally.sent += 1  # hello
        tally.received += 1  # welcome
        if args.hold:
            _hold_begins(tally)
            op = history.invoke("c", RealWait(seconds=args.hold))
            await asyncio.sleep(args.hold)
            history.complete(op, "ok", Done())
            tally.held -= 1
        for cycle in range(args.cycles):
            if cycle:  # the reconnect: a resume of the same session
                op = history.invoke("c", Resume(token="current"))
                outcome = await driver.resume(OPEN_TIMEOUT_S)
                history.complete(op, "ok", outcome)
                if outcome.kind != "full":
                    raise RuntimeError(f"resume: {outcome.kind} {outcome.reason}")
            for _ in range(args.turns):
                op = history.invoke("c", SendMessage(text=TEXT))
                message_id = await driver.send_message(TEXT)
                history.complete(op, "ok", Sent(message_id=message_id, connected=driver.connected))
                op = history.invoke("c", AwaitReply(message_id=message_id, timeout=TURN_TIMEOUT_S))
                parts = await driver.await_reply(message_id, TURN_TIMEOUT_S)
                history.complete(op, "ok", Replied(parts=parts))
                tally.sent += 1
                tally.received += args.frames
            op = history.invoke("c", Disconnect(how="close"))
            await driver.disconnect("close")
            history.complete(op, "ok", Done())
        if driver.client.errors:
            raise RuntimeError(f"protocol errors: {driver.client.errors[:1]}")
    finally:
        history.close_unfinished("cut short")
        await driver.aclose()
        _checked(history, tally, INFO.positions)


async def echo_client(args: argparse.Namespace, tally: Tally) -> None:
    """One simulated client of the bare echo server, with the same records."""
    history = History()
    op = history.invoke("c", Connect())
    ws = await connect(args.url, **{**CONNECT_OPTIONS, "open_timeout": OPEN_TIMEOUT_S})
    stream = f"echo-{id(ws):x}"
    history.complete(op, "ok", Outcome(kind="new", session=stream, stream=stream, after=0))
    position = 0
    try:
        if args.hold:
            _hold_begins(tally)
            op = history.invoke("c", RealWait(seconds=args.hold))
            await asyncio.sleep(args.hold)
            history.complete(op, "ok", Done())
            tally.held -= 1
        for _ in range(args.turns):
            op = history.invoke("c", SendRaw(size=len(REQUEST), binary=False))
            await ws.send(REQUEST, text=True)
            async with asyncio.timeout(TURN_TIMEOUT_S):
                for _ in range(args.frames):
                    frame = await ws.recv(decode=False)
                    position += 1
                    history.event(
                        "c", Delivered(stream=stream, position=position, kind="echo", text=None)
                    )
                    del frame
            history.complete(op, "ok", RawAnswer(error=None, close=None))
            tally.sent += 1
            tally.received += args.frames
        op = history.invoke("c", Disconnect(how="close"))
        await ws.close()
        history.complete(op, "ok", Done())
    finally:
        history.close_unfinished("cut short")
        await ws.close()
        _checked(history, tally, ECHO_POSITIONS)


async def _one(args: argparse.Namespace, token: str, tally: Tally) -> None:
    tally.started += 1
    try:
        if args.target == "reference":
            await reference_client(args, token, tally)
        else:
            await echo_client(args, tally)
    except Exception as exc:  # one client's failure is counted, never fatal to the herd
        tally.failed += 1
        tally.errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
    else:
        tally.completed += 1


async def run(args: argparse.Namespace) -> Tally:
    """Start every client on its arrival time; wait for all (bounded by ``--timeout``)."""
    token = os.environ.get(args.token_env, "") if args.token_env else ""
    tally = Tally()
    start = time.monotonic()
    async with asyncio.timeout(args.timeout), asyncio.TaskGroup() as group:
        for i in range(args.clients):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(_one(args, token, tally))
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_client", description=__doc__)
    parser.add_argument("--target", choices=("echo", "reference"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-env", default="", help="variable holding the bearer token")
    parser.add_argument("--rate", type=float, required=True, help="clients started per second")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--turns", type=int, default=0)
    parser.add_argument("--frames", type=int, default=1, help="frames received per turn")
    parser.add_argument(
        "--cycles", type=int, default=1, help="reference: reconnects (resumes) + 1 per client"
    )
    parser.add_argument("--hold", type=float, default=0.0, help="seconds connected, no turn")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on the whole run")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tally = asyncio.run(run(args))
    print(
        json.dumps(
            {
                "started": tally.started,
                "completed": tally.completed,
                "failed": tally.failed,
                "errors": dict(tally.errors.most_common(5)),
                "sent": tally.sent,
                "received": tally.received,
                "ops": tally.ops,
                "undelivered": tally.undelivered,
                "held_peak": tally.held_peak,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
