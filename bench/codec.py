"""Codec: encode and decode per message through the protocol codec, against stdlib ``json``.

The baseline decodes the same bytes with ``json.loads`` into a dict (no validation) and encodes
the same dicts with a prebuilt ``json.JSONEncoder``; the codec decodes into typed, validated,
frozen messages. Figures are the minimum over repeats, in nanoseconds per message.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from reference_server.protocol import codec
from reference_server.protocol.messages import (
    Ack,
    AgentContext,
    AgentContextData,
    ConversationHistory,
    HistoryEntry,
    Ping,
    ReplyChunk,
    ToolCall,
    ToolCallRecord,
    UserMessage,
    WorkflowState,
)

ServerFrames = list[bytes]


def _mix() -> tuple[list[bytes], list[bytes]]:
    """A chat-shaped mix: mostly reply chunks and acks, some history and context."""
    record = ToolCallRecord(call_id="t1", tool="add", arguments={"a": 2, "b": 3}, result="5")
    context = AgentContextData(
        memory={"name": "Ada", "city": "Lyon"},
        preferences={"tone": "brief", "language": "en"},
        variables={"budget": 1200, "approved": True},
        workflow=WorkflowState(
            name="onboarding", step=3, completed=("greet", "collect", "confirm")
        ),
        tool_calls=(record,),
    )
    entries = tuple(
        HistoryEntry(index=i, role="user" if i % 2 else "agent", message_id=f"u{i}", text="x" * 60)
        for i in range(20)
    )
    server: list[Any] = []
    for i in range(1, 81):
        server.append(
            ReplyChunk(
                seq=i, in_reply_to="u1", chunk_index=i % 4, text="word " * 8, final=i % 4 == 3
            )
        )
    server += [ToolCall(seq=81 + i, in_reply_to="u2", call=record) for i in range(5)]
    server += [
        AgentContext(seq=86 + i, in_reply_to="c1", context=context, retrieval_ms=0.4)
        for i in range(5)
    ]
    server += [
        ConversationHistory(
            seq=91 + i,
            in_reply_to="h1",
            entries=entries,
            total=20,
            next_before=None,
            retrieval_ms=0.7,
        )
        for i in range(2)
    ]
    server += [Ping(nonce=i) for i in range(8)]
    client: list[Any] = [Ack(seq=i) for i in range(60)]
    client += [UserMessage(id=f"u{i}", seq=i, text="What is 2 plus 3?") for i in range(1, 41)]
    return [codec.encode(m) for m in server], [codec.encode(m) for m in client]


def _time(fn: Callable[[], object], n: int, repeats: int) -> float:
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter_ns()
            fn()
            best = min(best, (time.perf_counter_ns() - start) / n)
    finally:
        gc.enable()
    return best


def run(quick: bool = False) -> tuple[list[tuple[str, float, float]], str]:
    """Measure; return rows (name, codec ns, json ns) and a markdown table."""
    server, client = _mix()
    frames = server + client
    messages = [codec.decode_server(f) for f in server] + [codec.decode_client(f) for f in client]
    dicts = [json.loads(f) for f in frames]
    encoder = json.JSONEncoder(separators=(",", ":"))
    repeats = 3 if quick else 15
    loops = 5 if quick else 50

    def decode_codec() -> None:
        for _ in range(loops):
            for f in server:
                codec.decode_server(f)
            for f in client:
                codec.decode_client(f)

    def decode_json() -> None:
        for _ in range(loops):
            for f in frames:
                json.loads(f)

    def encode_codec() -> None:
        for _ in range(loops):
            for m in messages:
                codec.encode(m)

    def encode_json() -> None:
        for _ in range(loops):
            for d in dicts:
                encoder.encode(d).encode()

    n = len(frames) * loops
    rows = [
        (
            "decode (bytes to message)",
            _time(decode_codec, n, repeats),
            _time(decode_json, n, repeats),
        ),
        (
            "encode (message to bytes)",
            _time(encode_codec, n, repeats),
            _time(encode_json, n, repeats),
        ),
    ]
    avg = sum(map(len, frames)) / len(frames)
    lines = [
        f"{len(frames)} frames per pass (average {avg:.0f} bytes): 80 reply chunks, 5 tool calls, "
        "5 agent contexts, 2 history pages, 8 pings, 60 acks, 40 user messages.",
        "",
        "| operation | protocol codec (ns/msg) | stdlib json, no validation (ns/msg) "
        "| codec / json |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {c:.0f} | {j:.0f} | {c / j:.2f}x |" for name, c, j in rows]
    return rows, "\n".join(lines)


def main(argv: Sequence[str] = ()) -> str:
    """Run and return the markdown table."""
    return run(quick="--quick" in argv)[1]
