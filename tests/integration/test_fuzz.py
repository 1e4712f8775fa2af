"""Random and malformed traffic against a live reference server (docs/protocol.md §12).

One in-process server on 127.0.0.1 serves a well-behaved client chatting the whole time, while
hypothesis opens raw WebSocket connections and sends them random bytes, random text, truncated
and ill-typed JSON, unknown types, oversized frames, resumes with made-up ids and tokens, acks
for seqs never sent, sequence gaps and floods, some with a missing or bad credential. Each such
connection must end with a typed answer and the close code that answer calls for, or stay open
and answer; the good client must not notice any of it.

Hypothesis drives the examples from a worker thread; each example's connection runs on the
test's event loop, next to the server and the good client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from reference_server import agent
from reference_server.aio_client import AsyncClient
from reference_server.app import ReferenceServer
from reference_server.auth import mint
from reference_server.config import ServerConfig
from reference_server.protocol import (
    Attached,
    CloseCode,
    DuplicateDelivery,
    ErrorCode,
    SequenceGap,
    UnnumberedError,
    codec,
)
from reference_server.protocol.errors import REJECTION_CLOSE_CODES
from reference_server.protocol.messages import (
    AgentContextData,
    Bye,
    ConversationHistory,
    Error,
    HistoryEntry,
    Rejected,
    ReplyChunk,
    Resumed,
    ServerMessage,
    ToolCall,
    Welcome,
)

pytestmark = pytest.mark.slow

SECRET = "fuzz-tests-secret-0123456789abcdef0123456"  # HS256 wants at least 32 bytes
MAX_FRAME = codec.DEFAULT_MAX_FRAME_BYTES  # the server's limit on client frames
EXAMPLE_TIMEOUT_S = 15.0
WAIT_S = 5.0
HELLO = '{"type":"hello","versions":[1]}'
PROBE_NONCE = 2**53 - 1  # the largest valid integer (§1); no generated ping uses it
RARE_ONE_IN = 12
FLOOD = 600  # frames at once: over the fuzzed server's burst of 100

Auth = Literal["valid", "none", "not_bearer", "garbage", "wrong_secret", "expired"]

# What the server answers each error with when it then closes the connection (§12, §13).
_CLOSE_AFTER_ERROR: dict[str, int] = {
    ErrorCode.BINARY_FRAME: CloseCode.UNSUPPORTED_DATA,
    ErrorCode.RATE_LIMITED: CloseCode.POLICY_VIOLATION,
    ErrorCode.SEQUENCE_GAP: CloseCode.PROTOCOL_ERROR,
    ErrorCode.UNEXPECTED_MESSAGE: CloseCode.PROTOCOL_ERROR,
    ErrorCode.FRAME_TOO_LARGE: CloseCode.MESSAGE_TOO_BIG,
}
_ERROR_CODES = frozenset(v for k, v in vars(ErrorCode).items() if k.isupper())


# --- what a fuzzing connection sends -------------------------------------------------------


@dataclass(frozen=True)
class NextRequest:
    """A valid request, numbered with the connection's next client seq when it is sent."""

    kind: Literal["user_message", "get_conversation_history", "get_agent_context"]
    text: str


@dataclass(frozen=True)
class Burst:
    """One frame sent ``count`` times in a row: a flood, or more bad frames than allowed."""

    frame: str
    count: int


Item = str | bytes | NextRequest | Burst


@dataclass(frozen=True)
class Script:
    """One fuzzing connection: how it authenticates and what it sends, in order."""

    auth: Auth
    items: tuple[Item, ...]


@dataclass
class Outcome:
    """What one fuzzing connection saw."""

    status: int | None = None
    """The HTTP status when the handshake was refused."""
    sent: list[str | bytes] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    close: Literal["server", "client", "abnormal"] | None = None
    close_code: int | None = None
    """The close code the server sent, if it sent one."""


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_ints = st.integers(min_value=-3, max_value=12) | st.integers() | st.just(2**53 + 1)


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _resumes(session_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Resumes of the given sessions or of made-up ones, always with a made-up token."""
    text = st.text(max_size=40)
    return st.fixed_dictionaries(
        {
            "type": st.just("resume"),
            "versions": st.just([1]),
            "session_id": st.sampled_from(session_ids) | text,
            "resume_token": text,
            "epoch": text,
            "last_seq": _ints,
        }
    )


def _messages(session_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Client messages with plausible, often valid, sometimes out-of-range fields."""
    text = st.text(max_size=40)
    return st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("hello"), "versions": st.just([1]) | st.lists(_ints, max_size=3)}
        ),
        _resumes(session_ids),
        st.fixed_dictionaries(
            {"type": st.just("user_message"), "id": text, "seq": _ints, "text": text}
        ),
        st.fixed_dictionaries(
            {"type": st.just("get_conversation_history"), "id": text, "seq": _ints},
            optional={"before": st.none() | _ints, "limit": _ints},
        ),
        st.fixed_dictionaries({"type": st.just("get_agent_context"), "id": text, "seq": _ints}),
        st.fixed_dictionaries({"type": st.just("ack"), "seq": _ints}),
        st.fixed_dictionaries({"type": st.sampled_from(["ping", "pong"]), "nonce": _ints}),
        st.fixed_dictionaries({"type": st.just("bye")}, optional={"reason": text}),
    )


def _wrong_types() -> st.SearchStrategy[dict[str, Any]]:
    """A known type (either side's) with fields of that type's names holding any JSON."""
    names = ["id", "seq", "text", "versions", "session_id", "resume_token", "epoch", "last_seq"]
    return st.builds(
        lambda kind, fields: {"type": kind, **fields},
        st.sampled_from(
            ["hello", "resume", "user_message", "ack", "ping", "welcome", "resumed", "error"]
        ),
        st.dictionaries(st.sampled_from([*names, "before", "limit", "nonce"]), _json, max_size=4),
    )


def _items(session_ids: list[str]) -> st.SearchStrategy[Item]:
    messages = _messages(session_ids)
    next_request = st.builds(
        NextRequest,
        st.sampled_from(["user_message", "get_conversation_history", "get_agent_context"]),
        st.text(max_size=30),
    )
    rare = st.one_of(
        st.integers(min_value=1, max_value=2048).map(lambda extra: "x" * (MAX_FRAME + extra)),
        st.integers(min_value=1, max_value=64).map(lambda extra: b"\0" * (MAX_FRAME + extra)),
        st.integers(min_value=MAX_FRAME // 8, max_value=MAX_FRAME // 6).map(
            lambda words: NextRequest("user_message", "so many words " * words)
        ),
        st.just(Burst(_dump({"type": "ping", "nonce": 1}), FLOOD)),
        st.builds(
            Burst,
            st.sampled_from(['{"type":', '{"type":"teleport"}', '{"type":"ack","seq":"x"}', "[]"]),
            st.integers(min_value=15, max_value=30),
        ),
    )
    common = st.one_of(
        st.binary(max_size=48) | st.text(max_size=48) | _json.map(_dump),
        messages.map(_dump),
        messages.map(_dump),
        _wrong_types().map(_dump),
        st.fixed_dictionaries({"type": st.text(max_size=16)}).map(_dump),  # unknown types
        st.builds(  # truncated JSON
            lambda frame, cut: frame[: cut % max(1, len(frame) - 1)],
            messages.map(_dump),
            st.integers(min_value=0),
        ),
        st.builds(lambda frame, tail: frame + tail, messages.map(_dump), st.text(min_size=1)),
        next_request,
        next_request,
        next_request,
    )
    # one_of weighs its leaves alike; a rare item is one in RARE_ONE_IN.
    return st.tuples(st.integers(min_value=1, max_value=RARE_ONE_IN), rare, common).map(
        lambda drawn: drawn[1] if drawn[0] == 1 else drawn[2]
    )


def _scripts(session_ids: list[str]) -> st.SearchStrategy[Script]:
    items = _items(session_ids)
    opening = st.one_of(
        st.just(HELLO),
        st.just(HELLO),
        st.just(HELLO),
        _resumes(session_ids).map(_dump),
        items,
        st.none(),  # send nothing at all
    )
    auth: st.SearchStrategy[Auth] = st.sampled_from(
        ["valid"] * 25 + ["none", "not_bearer", "garbage", "wrong_secret", "expired"]
    )
    return st.builds(
        Script,
        auth,
        st.builds(
            lambda first, rest: () if first is None else (first, *rest),
            opening,
            st.lists(items, max_size=12),
        ),
    )


def _headers(auth: Auth) -> dict[str, str]:
    credential = {
        "valid": mint("fuzzer", SECRET),
        "none": "",
        "not_bearer": "Basic " + mint("fuzzer", SECRET),
        "garbage": "not-a-jwt-" + string.ascii_letters,
        "wrong_secret": mint("fuzzer", "another-secret-0123456789abcdef0123456789"),
        "expired": mint("fuzzer", SECRET, ttl_s=60, now=time.time() - 3600),
    }[auth]
    if not credential:
        return {}
    if auth == "not_bearer":
        return {"Authorization": credential}
    return {"Authorization": f"Bearer {credential}"}


def _render(item: str | bytes | NextRequest, seq: int) -> str | bytes:
    if not isinstance(item, NextRequest):
        return item
    if item.kind == "user_message":
        return _dump({"type": item.kind, "id": f"n{seq}", "seq": seq, "text": item.text})
    return _dump({"type": item.kind, "id": f"n{seq}", "seq": seq})


# --- one fuzzing connection ----------------------------------------------------------------


async def _until(predicate: Callable[[], object], what: str) -> None:
    """Wait (polling the event loop) until ``predicate()`` is true; TimeoutError after WAIT_S."""
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                if predicate():
                    return
                await asyncio.sleep(0.002)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _drive(url: str, script: Script) -> Outcome:
    """Open one connection, send the script, then read until the connection is settled."""
    outcome = Outcome()
    try:
        ws = await connect(
            url,
            additional_headers=_headers(script.auth),
            proxy=None,
            open_timeout=WAIT_S,
            ping_interval=None,
            close_timeout=1,
            max_size=None,
            compression=None,
        )
    except InvalidStatus as exc:
        outcome.status = exc.response.status_code
        return outcome
    async with ws:
        reader = asyncio.create_task(_read(ws, outcome.received))

        def settled() -> bool:  # the server closed, or the connection is gone
            return reader.done() or ws.protocol.close_rcvd is not None

        await _send(ws, script.items, outcome.sent, settled)
        if outcome.sent:  # the server opens a session, or refuses and closes
            await _until(lambda: _welcomed(outcome.received) or settled(), "a welcome or a close")
        if not settled() and _welcomed(outcome.received):
            # Frames are handled in order: once the pong is back, everything before it was.
            with contextlib.suppress(ConnectionClosed):
                await ws.send(_dump({"type": "ping", "nonce": PROBE_NONCE}))
            await _until(lambda: _probe_answered(outcome.received) or settled(), "a pong")
        if not settled():
            await ws.close()
        elif not reader.done():
            # The server's close frame is in. It may wait for our echo until its close timeout
            # when it stopped reading with our frames still queued: no need to wait with it.
            ws.transport.abort()
        await reader
    state = ws.protocol
    if state.close_rcvd is None:
        outcome.close = "abnormal"
    else:
        outcome.close_code = state.close_rcvd.code
        outcome.close = "server" if state.close_rcvd_then_sent else "client"
    return outcome


async def _read(ws: ClientConnection, into: list[str | bytes]) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for frame in ws:
            into.append(frame)


async def _send(
    ws: ClientConnection,
    items: tuple[Item, ...],
    sent: list[str | bytes],
    settled: Callable[[], bool],
) -> None:
    seq = 0
    for item in items:
        if settled():
            return
        if isinstance(item, Burst):
            frames: list[str | bytes] = [item.frame] * item.count
        else:
            if isinstance(item, NextRequest):
                seq += 1
            frames = [_render(item, seq)]
        for frame in frames:
            try:
                await ws.send(frame)
            except ConnectionClosed:
                return
            sent.append(frame)


def _decoded(outcome: Outcome) -> list[ServerMessage]:
    assert [] == [f for f in outcome.received if isinstance(f, bytes)], "binary frames sent"
    return [codec.decode_server(frame) for frame in outcome.received]


def _welcomed(received: list[str | bytes]) -> bool:
    return any(isinstance(f, str) and f.startswith('{"type":"welcome"') for f in received)


def _probe_answered(received: list[str | bytes]) -> bool:
    return any(f == _dump({"type": "pong", "nonce": PROBE_NONCE}) for f in received)


def _size(frame: str | bytes) -> int:
    return len(frame.encode() if isinstance(frame, str) else frame)


def _check(script: Script, outcome: Outcome, max_bad_frames: int) -> None:
    """The rules every fuzzing connection's outcome must follow (§4.2, §12, §13, §15)."""
    if script.auth != "valid":
        assert 401 == outcome.status
        return
    assert outcome.status is None
    messages = _decoded(outcome)
    assert [] == [m for m in messages if isinstance(m, Resumed)], "a made-up resume succeeded"
    welcomes = [i for i, m in enumerate(messages) if isinstance(m, Welcome)]
    assert welcomes in ([], [0]), f"the welcome is not the first frame: {messages[:2]}"
    attached = welcomes == [0]
    errors = [m for m in messages if isinstance(m, Error)]
    assert [] == [e.code for e in errors if e.code not in _ERROR_CODES]
    assert outcome.close != "abnormal", "the server dropped the connection without a close frame"

    if outcome.close == "client":  # the server never closed: it stayed open and answering
        assert not outcome.sent or (attached and _probe_answered(outcome.received))
        return
    code = outcome.close_code
    assert code is not None
    assert CloseCode.INTERNAL_ERROR != code, "the server's handler crashed"
    if code == CloseCode.NORMAL:
        assert any(_is_bye(frame) for frame in outcome.sent)
        # A bye right behind the hello ends the session before its welcome went out.
        assert attached or [] == messages
    elif code == CloseCode.MESSAGE_TOO_BIG:
        assert any(_size(frame) > MAX_FRAME for frame in outcome.sent)
    else:
        last = messages[-1] if messages else None
        assert isinstance(last, Error | Rejected), f"close {code} without a typed answer"
        if isinstance(last, Rejected):
            assert not attached
            assert REJECTION_CLOSE_CODES[last.reason] == code
        else:
            default = CloseCode.POLICY_VIOLATION if attached else CloseCode.PROTOCOL_ERROR
            assert _CLOSE_AFTER_ERROR.get(last.code, default) == code
            if last.code not in _CLOSE_AFTER_ERROR:
                # Closed for bad frames: after every one of them had its own error.
                expected = max_bad_frames + 1 if attached else 1
                assert expected == len([e for e in errors if e.seq is None])


def _is_bye(frame: str | bytes) -> bool:
    try:
        return isinstance(codec.decode_client(frame, max_bytes=2**31), Bye)
    except Exception:  # any frame that does not decode is not a bye
        return False


def _explicit(good_session: str) -> list[Script]:
    """Examples run every time, so that every kind of answer is seen at least once."""
    resume = {"type": "resume", "versions": [1], "resume_token": "t", "epoch": "e", "last_seq": 0}
    return [
        Script("none", (HELLO,)),
        Script("expired", (HELLO,)),
        Script("valid", ()),
        Script("valid", ('{"type":"ack","seq":0}',)),  # the first frame must be hello or resume
        Script("valid", (HELLO, "")),  # an error right behind the hello follows the welcome
        Script("valid", (HELLO, HELLO)),
        Script("valid", (HELLO, b"\x00binary")),
        Script("valid", (HELLO, "x" * (MAX_FRAME + 1))),
        Script("valid", (HELLO, _dump({"type": "user_message", "id": "g", "seq": 5, "text": ""}))),
        Script("valid", (HELLO, Burst(_dump({"type": "ping", "nonce": 1}), FLOOD))),
        Script("valid", (HELLO, Burst('{"type":', 25))),
        Script(
            "valid",
            (
                HELLO,
                _dump({"type": "ack", "seq": 99}),  # an ack for a seq never sent
                NextRequest("user_message", "set x = 1"),
                _dump({"type": "user_message", "id": "n1", "seq": 1, "text": "again"}),
                NextRequest("get_agent_context", ""),
            ),
        ),
        Script("valid", (HELLO, _dump({"type": "bye"}))),
        Script("valid", (_dump({**resume, "session_id": "no-such-session"}),)),
        Script("valid", (_dump({**resume, "session_id": good_session}),)),
    ]


def _kind(outcome: Outcome) -> int | str:
    """What one outcome exercised: an HTTP status, a close code, or an open connection."""
    if outcome.status is not None:
        return outcome.status
    if outcome.close == "server" and outcome.close_code is not None:
        return outcome.close_code
    return "open" if _probe_answered(outcome.received) else "silent"


# --- the well-behaved client ---------------------------------------------------------------


async def _chat(client: AsyncClient, stop: asyncio.Event) -> list[tuple[str, str]]:
    """Chat turn after turn, each waited for, until ``stop``; return (id, text) of each."""
    turns: list[tuple[str, str]] = []
    while not stop.is_set():
        n = len(turns)
        text = f"set x = {n}; what is x * 2" if n % 3 else f"remember that turn {n} is fine"
        message_id = await client.send_user_message(text)
        turns.append((message_id, text))
        await client.reply_to(message_id, timeout=WAIT_S)
        await asyncio.sleep(0.05)  # a human pace, well under the server's rate limit
    return turns


async def _history(client: AsyncClient) -> list[HistoryEntry]:
    """Every stored turn, oldest first, page by page."""
    entries: list[HistoryEntry] = []
    before: int | None = None
    while True:
        page: ConversationHistory = await client.history(before=before, limit=500)
        entries[:0] = page.entries
        if page.next_before is None:
            return entries
        before = page.next_before


def _check_good_client(
    client: AsyncClient, turns: list[tuple[str, str]]
) -> tuple[list[HistoryEntry], AgentContextData]:
    """Every reply arrived whole and once, as the agent gives it; return the history and the
    agent context the server must hold."""
    seqs = [m.seq for m in client.delivered if m.seq is not None]
    assert list(range(1, len(seqs) + 1)) == seqs
    assert [] == [
        e for e in client.events if isinstance(e, DuplicateDelivery | SequenceGap | UnnumberedError)
    ]
    assert [] == client.errors
    assert [] == client.close_codes  # never disconnected
    context = agent.new_context()
    entries: list[HistoryEntry] = []
    for message_id, text in turns:
        turn = agent.respond(context, message_id, text)
        reply = [m for m in client.delivered if getattr(m, "in_reply_to", None) == message_id]
        chunks = [m for m in reply if isinstance(m, ReplyChunk)]
        assert turn.reply == "".join(c.text for c in chunks)
        assert list(range(len(turn.chunks))) == [c.chunk_index for c in chunks]
        assert list(turn.tool_calls) == [m.call for m in reply if isinstance(m, ToolCall)]
        index = len(entries)
        entries += [
            HistoryEntry(index=index, role="user", message_id=message_id, text=text),
            HistoryEntry(index=index + 1, role="agent", message_id=message_id, text=turn.reply),
        ]
        context = turn.context
    return entries, context


async def _errors_total(http: httpx.AsyncClient, base: str) -> float:
    """The sum of ``ws_protocol_errors_total`` over every error code."""
    text = (await http.get(base + "/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ws_protocol_errors_total{")
    )


# --- the test ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fuzzed_connections_get_typed_answers_and_never_disturb_a_good_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Random and malformed frames on raw connections each get a typed error and the close code
    it calls for (or an open connection that still answers), HTTP 401 without a valid token, and
    never a crash: the server stays healthy and a client chatting meanwhile loses nothing."""
    # A smaller burst than the default, so that a flood of FLOOD frames trips it for sure.
    config = ServerConfig(chunk_delay_s=0, auth_secret=SECRET, store="memory", frame_burst=100)
    loop = asyncio.get_running_loop()
    async with (
        ReferenceServer(config) as server,
        httpx.AsyncClient(timeout=WAIT_S, trust_env=False) as http,
    ):
        base = f"http://127.0.0.1:{server.port}"
        errors_before = await _errors_total(http, base)
        good = AsyncClient(server.url, mint("ada", SECRET))
        attached = await good.connect()
        assert isinstance(attached, Attached)
        stop = asyncio.Event()
        chatter = asyncio.create_task(_chat(good, stop))
        seen: list[int | str] = []

        @settings(max_examples=250, deadline=None)
        @given(script=_scripts([attached.session_id]))
        def fuzz(script: Script) -> None:
            future = asyncio.run_coroutine_threadsafe(
                asyncio.wait_for(_drive(server.url, script), EXAMPLE_TIMEOUT_S), loop
            )
            outcome = future.result()
            seen.append(_kind(outcome))
            _check(script, outcome, config.max_bad_frames)

        for script in _explicit(attached.session_id):
            fuzz = example(script=script)(fuzz)
        try:
            await asyncio.to_thread(fuzz)
        finally:
            stop.set()
            turns = await chatter

        health = await http.get(base + "/healthz")
        assert (200, "ok\n") == (health.status_code, health.text)
        assert errors_before < await _errors_total(http, base)
        entries, context = _check_good_client(good, turns)
        assert context == (await good.agent_context()).context
        assert entries == await _history(good)
        await good.drop()
    # 4003: the fuzzer resuming the good client's session is another user (§7.2 check 4).
    expected: set[int | str] = {401, 1000, 1003, 1008, 1009, 4000, 4003, 4004, "open", "silent"}
    assert expected <= set(seen)
    assert 250 <= len(seen)
    assert [] == [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
