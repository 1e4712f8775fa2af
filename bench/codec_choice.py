"""Codec choice benchmark: msgspec vs pydantic v2, with stdlib ``json`` as the baseline.

Run with::

    .venv/bin/python -m bench.codec_choice

It measures, in one run on this machine:

* decode + validate (wire bytes -> frozen typed message) and encode (typed message -> wire bytes)
  per message, for a fixed, seeded mix of twelve protocol message types, plus four single types;
* the baseline: ``json.loads`` to a dict (no validation) and ``json.dumps`` of that dict;
* the error each library gives for four bad frames, and whether the path to the failing field
  can be extracted programmatically;
* a YAML scenario with two mistakes, validated by both libraries, with each error mapped back to
  file, line, column and field through pyyaml's node marks.

pydantic is not a project dependency; it only has to be installed to re-run this comparison.
Every figure is the minimum over several repeats (``time.perf_counter_ns``, GC disabled while
timing) and includes the Python ``for`` loop, whose own cost is printed as ``loop overhead``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Annotated, Any, Literal

import msgspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# --------------------------------------------------------------------------------------------
# (a) protocol messages, msgspec flavour
# --------------------------------------------------------------------------------------------


class _MStruct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    """Base for protocol messages: frozen, tagged by ``type``, unknown fields rejected."""


class MWindows(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    full_replay_s: int
    degraded_s: int


class MHistoryEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    seq: int
    role: Literal["user", "agent"]
    text: str


class MHello(_MStruct, tag="hello", frozen=True):
    protocol_version: int
    client_id: str
    auth: str


class MWelcome(_MStruct, tag="welcome", frozen=True):
    protocol_version: int
    session_id: str
    resume_token: str
    epoch: str
    windows: MWindows
    heartbeat_s: int
    capabilities: tuple[str, ...]


class MResume(_MStruct, tag="resume", frozen=True):
    session_id: str
    resume_token: str
    epoch: str
    last_seq: int
    auth: str


class MResumed(_MStruct, tag="resumed", frozen=True):
    outcome: Literal["full", "degraded"]
    seq: int
    epoch: str
    resume_token: str
    replayed: int
    warnings: tuple[str, ...]
    lost: tuple[str, ...]


class MUserMessage(_MStruct, tag="user_message", frozen=True):
    id: str
    seq: int
    text: str


class MReplyChunk(_MStruct, tag="reply_chunk", frozen=True):
    seq: int
    in_reply_to: str
    chunk_index: int
    text: str
    final: bool


class MAck(_MStruct, tag="ack", frozen=True):
    seq: int


class MPing(_MStruct, tag="ping", frozen=True):
    ts_ms: int


class MPong(_MStruct, tag="pong", frozen=True):
    ts_ms: int


class MGetHistory(_MStruct, tag="get_conversation_history", frozen=True):
    id: str
    seq: int
    limit: int


class MHistory(_MStruct, tag="conversation_history", frozen=True):
    seq: int
    in_reply_to: str
    messages: tuple[MHistoryEntry, ...]


class MError(_MStruct, tag="error", frozen=True):
    code: str
    message: str
    in_reply_to: str | None
    retry_after_ms: int | None


MMessage = (
    MHello
    | MWelcome
    | MResume
    | MResumed
    | MUserMessage
    | MReplyChunk
    | MAck
    | MPing
    | MPong
    | MGetHistory
    | MHistory
    | MError
)

M_DECODER: msgspec.json.Decoder[MMessage] = msgspec.json.Decoder(MMessage)
M_ENCODER = msgspec.json.Encoder()

# --------------------------------------------------------------------------------------------
# (a) protocol messages, pydantic flavour (strictness is chosen per call, see P_STRICT)
# --------------------------------------------------------------------------------------------


class _PModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PWindows(_PModel):
    full_replay_s: int
    degraded_s: int


class PHistoryEntry(_PModel):
    id: str
    seq: int
    role: Literal["user", "agent"]
    text: str


class PHello(_PModel):
    type: Literal["hello"] = "hello"
    protocol_version: int
    client_id: str
    auth: str


class PWelcome(_PModel):
    type: Literal["welcome"] = "welcome"
    protocol_version: int
    session_id: str
    resume_token: str
    epoch: str
    windows: PWindows
    heartbeat_s: int
    capabilities: tuple[str, ...]


class PResume(_PModel):
    type: Literal["resume"] = "resume"
    session_id: str
    resume_token: str
    epoch: str
    last_seq: int
    auth: str


class PResumed(_PModel):
    type: Literal["resumed"] = "resumed"
    outcome: Literal["full", "degraded"]
    seq: int
    epoch: str
    resume_token: str
    replayed: int
    warnings: tuple[str, ...]
    lost: tuple[str, ...]


class PUserMessage(_PModel):
    type: Literal["user_message"] = "user_message"
    id: str
    seq: int
    text: str


class PReplyChunk(_PModel):
    type: Literal["reply_chunk"] = "reply_chunk"
    seq: int
    in_reply_to: str
    chunk_index: int
    text: str
    final: bool


class PAck(_PModel):
    type: Literal["ack"] = "ack"
    seq: int


class PPing(_PModel):
    type: Literal["ping"] = "ping"
    ts_ms: int


class PPong(_PModel):
    type: Literal["pong"] = "pong"
    ts_ms: int


class PGetHistory(_PModel):
    type: Literal["get_conversation_history"] = "get_conversation_history"
    id: str
    seq: int
    limit: int


class PHistory(_PModel):
    type: Literal["conversation_history"] = "conversation_history"
    seq: int
    in_reply_to: str
    messages: tuple[PHistoryEntry, ...]


class PError(_PModel):
    type: Literal["error"] = "error"
    code: str
    message: str
    in_reply_to: str | None
    retry_after_ms: int | None


PMessage = Annotated[
    PHello
    | PWelcome
    | PResume
    | PResumed
    | PUserMessage
    | PReplyChunk
    | PAck
    | PPing
    | PPong
    | PGetHistory
    | PHistory
    | PError,
    Field(discriminator="type"),
]

P_ADAPTER: TypeAdapter[PMessage] = TypeAdapter(PMessage)

# --------------------------------------------------------------------------------------------
# Sample traffic
# --------------------------------------------------------------------------------------------

_WORDS = (
    "the",
    "session",
    "resumes",
    "after",
    "the",
    "drop",
    "and",
    "the",
    "agent",
    "keeps",
    "its",
    "memory",
    "of",
    "the",
    "conversation",
    "while",
    "replaying",
    "unacked",
    "chunks",
    "in",
    "order",
    ";",
    "café",
    "naïve",
    "résumé",
    "東京",
    "✓",
)


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def sample_messages(rng: random.Random) -> dict[str, dict[str, Any]]:
    """One representative instance of every message type, as the dict json.loads would give."""
    token = "rt_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(43))
    session = "s-3f9c2a7e-51b0-4c1e-9d2f-8a6b7c5d4e3f"
    return {
        "hello": {"type": "hello", "protocol_version": 1, "client_id": "c-1", "auth": token},
        "welcome": {
            "type": "welcome",
            "protocol_version": 1,
            "session_id": session,
            "resume_token": token,
            "epoch": "e-7b1d",
            "windows": {"full_replay_s": 30, "degraded_s": 300},
            "heartbeat_s": 15,
            "capabilities": ["virtual_time", "takeover", "history"],
        },
        "resume": {
            "type": "resume",
            "session_id": session,
            "resume_token": token,
            "epoch": "e-7b1d",
            "last_seq": 41,
            "auth": token,
        },
        "resumed": {
            "type": "resumed",
            "outcome": "degraded",
            "seq": 42,
            "epoch": "e-7b1d",
            "resume_token": token,
            "replayed": 3,
            "warnings": ["in-flight replies older than 30 s were dropped"],
            "lost": ["reply_chunk:17-19"],
        },
        "user_message": {"type": "user_message", "id": "m-8", "seq": 3, "text": _text(rng, 12)},
        "reply_chunk": {
            "type": "reply_chunk",
            "seq": 42,
            "in_reply_to": "m-7",
            "chunk_index": 1,
            "text": _text(rng, 8),
            "final": False,
        },
        "ack": {"type": "ack", "seq": 41},
        "ping": {"type": "ping", "ts_ms": 1_767_225_600_123},
        "pong": {"type": "pong", "ts_ms": 1_767_225_600_123},
        "get_conversation_history": {
            "type": "get_conversation_history",
            "id": "q-1",
            "seq": 4,
            "limit": 20,
        },
        "conversation_history": {
            "type": "conversation_history",
            "seq": 43,
            "in_reply_to": "q-1",
            "messages": [
                {
                    "id": f"m-{i}",
                    "seq": i,
                    "role": "user" if i % 2 == 0 else "agent",
                    "text": _text(rng, 15),
                }
                for i in range(20)
            ],
        },
        "error": {
            "type": "error",
            "code": "overloaded",
            "message": "server busy, retry later",
            "in_reply_to": None,
            "retry_after_ms": 750,
        },
    }


# How many of each type in a 100-message stretch of a streaming chat session (both directions):
# replies stream in chunks, the client acks roughly every other chunk, a few control messages.
MIX_WEIGHTS: dict[str, int] = {
    "reply_chunk": 51,
    "ack": 30,
    "user_message": 6,
    "ping": 3,
    "pong": 3,
    "hello": 1,
    "welcome": 1,
    "resume": 1,
    "resumed": 1,
    "get_conversation_history": 1,
    "conversation_history": 1,
    "error": 1,
}


def wire(obj: dict[str, Any]) -> bytes:
    """What goes on the wire: compact UTF-8 JSON (websockets sends bytes as text with text=True)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def time_per_item(fn: Callable[[Any], object], items: Sequence[Any], repeats: int) -> float:
    """Minimum over ``repeats`` of the mean ns per call of ``fn`` over ``items`` (looped)."""
    loops = 1
    while True:  # calibrate: one repeat should take at least ~10 ms
        t0 = time.perf_counter_ns()
        for _ in range(loops):
            for x in items:
                fn(x)
        if time.perf_counter_ns() - t0 >= 10_000_000 or loops >= 1 << 16:
            break
        loops *= 2
    best = float("inf")
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            for _ in range(loops):
                for x in items:
                    fn(x)
            best = min(best, (time.perf_counter_ns() - t0) / (loops * len(items)))
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


# json.dumps() with any non-default argument builds a new JSONEncoder per call; a prebuilt one
# is what json.dumps uses internally, without that constructor cost, so the baseline is fair.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _json_dumps(d: dict[str, Any]) -> bytes:
    return _JSON_ENCODER.encode(d).encode()


def _p_encode_own(m: BaseModel) -> bytes:
    """A model's own serializer: skips the union dispatch that TypeAdapter.dump_json does."""
    return m.__pydantic_serializer__.to_json(m)


def _p_decode_strict(b: bytes) -> PMessage:
    return P_ADAPTER.validate_json(b, strict=True)


def _p_decode_lax(b: bytes) -> PMessage:
    return P_ADAPTER.validate_json(b)


def check_round_trips(samples: dict[str, dict[str, Any]]) -> None:
    """All three codecs must agree on every sample before any of them is timed."""
    for name, d in samples.items():
        b = wire(d)
        m = M_DECODER.decode(b)
        p = _p_decode_strict(b)
        assert json.loads(M_ENCODER.encode(m)) == d, name
        assert json.loads(P_ADAPTER.dump_json(p)) == d, name
        assert json.loads(_p_encode_own(p)) == d, name
        assert json.loads(_json_dumps(d)) == d, name


def run_timings(samples: dict[str, dict[str, Any]], repeats: int, seed: int) -> None:
    rng = random.Random(seed)
    mix_names = [n for n, w in MIX_WEIGHTS.items() for _ in range(w)]
    rng.shuffle(mix_names)
    datasets: dict[str, list[str]] = {
        "mix (100 msgs)": mix_names,
        "ack": ["ack"],
        "reply_chunk": ["reply_chunk"],
        "welcome": ["welcome"],
        "conversation_history": ["conversation_history"],
    }
    sizes = {n: len(wire(d)) for n, d in samples.items()}
    mix_bytes = sum(sizes[n] for n in mix_names) / len(mix_names)

    loop_ns = time_per_item(id, [wire(samples[n]) for n in mix_names], repeats)
    print(f"loop overhead (for x in items: id(x)): {loop_ns:.0f} ns/item, included below")
    print(f"mix: {MIX_WEIGHTS}")
    print(
        f"mean frame size in mix: {mix_bytes:.0f} B; sizes: "
        + ", ".join(f"{n}={sizes[n]} B" for n in datasets if n in sizes)
    )
    print()
    header = f"{'dataset':<22} {'op':<7} {'codec':<26} {'ns/msg':>9} {'x json':>7} {'x msgspec':>9}"
    print(header)
    print("-" * len(header))
    for label, names in datasets.items():
        dicts = [samples[n] for n in names]
        frames = [wire(d) for d in dicts]
        m_objs = [M_DECODER.decode(b) for b in frames]
        p_objs = [_p_decode_strict(b) for b in frames]
        dec: list[tuple[str, Callable[[Any], object], Sequence[Any]]] = [
            ("json.loads -> dict", json.loads, frames),
            ("msgspec", M_DECODER.decode, frames),
            ("pydantic strict", _p_decode_strict, frames),
            ("pydantic lax", _p_decode_lax, frames),
        ]
        enc: list[tuple[str, Callable[[Any], object], Sequence[Any]]] = [
            ("json dict -> bytes", _json_dumps, dicts),
            ("msgspec", M_ENCODER.encode, m_objs),
            ("pydantic adapter.dump_json", P_ADAPTER.dump_json, p_objs),
            ("pydantic model serializer", _p_encode_own, p_objs),
        ]
        for op, rows in (("decode", dec), ("encode", enc)):
            results = [(codec, time_per_item(fn, items, repeats)) for codec, fn, items in rows]
            base = results[0][1]
            ms = dict(results)["msgspec"]
            for codec, ns in results:
                print(
                    f"{label:<22} {op:<7} {codec:<26} {ns:>9.0f} {ns / base:>7.2f} {ns / ms:>9.2f}"
                )
        print()


# --------------------------------------------------------------------------------------------
# Error quality
# --------------------------------------------------------------------------------------------

_M_SUFFIX = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)
_M_TOKEN = re.compile(r"\.(?P<field>[^.\[]+)|\[(?P<index>\d+)\]|\[(?P<key>\.\.\.)\]")
_M_NAMED_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<f>[^`]+)`$")

PathElem = str | int | None  # None: a dict key msgspec does not report (rendered as ``[...]``)


def msgspec_path(err: msgspec.ValidationError) -> tuple[PathElem, ...]:
    """Recover the path from msgspec's message text (msgspec has no structured attribute)."""
    m = _M_SUFFIX.match(str(err))
    assert m is not None
    path: list[PathElem] = []
    for tok in _M_TOKEN.finditer(m.group("path") or "$"):
        if tok.group("field") is not None:
            path.append(tok.group("field"))
        elif tok.group("index") is not None:
            path.append(int(tok.group("index")))
        else:
            path.append(None)
    named = _M_NAMED_FIELD.match(m.group("msg"))
    if named:
        path.append(named.group("f"))
    return tuple(path)


def pydantic_paths(err: ValidationError) -> list[tuple[str, tuple[str | int, ...]]]:
    """(error type, loc) for every error; loc includes the union tag after each union."""
    return [(e["type"], tuple(e["loc"])) for e in err.errors(include_url=False)]


BAD_FRAMES: dict[str, bytes] = {
    "wrong type, nested": (
        b'{"type":"welcome","protocol_version":1,"session_id":"s","resume_token":"t",'
        b'"epoch":"e","windows":{"full_replay_s":"30","degraded_s":300},"heartbeat_s":15,'
        b'"capabilities":[]}'
    ),
    "missing field": (
        b'{"type":"reply_chunk","seq":42,"in_reply_to":"m-7","text":"hi","final":false}'
    ),
    "unknown tag": b'{"type":"reply_chunck","seq":42}',
    "unknown field": b'{"type":"ack","seq":41,"sequence":41}',
}


def _one_line(s: str) -> str:
    return " | ".join(line.strip() for line in s.splitlines() if line.strip())


def run_errors() -> None:
    print("Bad frames (decode + validate):")
    for case, frame in BAD_FRAMES.items():
        print(f"* {case}: {frame.decode()}")
        try:
            M_DECODER.decode(frame)
            print("    msgspec         : ACCEPTED")
        except msgspec.ValidationError as e:
            print(f"    msgspec         : {e}")
            print(f"      path via regex on str(e): {msgspec_path(e)}")
        for label, fn in (("pydantic strict", _p_decode_strict), ("pydantic lax", _p_decode_lax)):
            try:
                value = fn(frame)
                print(f"    {label:<16}: ACCEPTED as {value!r}")
            except ValidationError as e:
                print(f"    {label:<16}: {_one_line(str(e))}")
                print(f"      e.errors() (type, loc): {pydantic_paths(e)}")
    # Not one of the four frames, but it decides how scenario files may be shaped: a failing
    # value inside a dict[str, ...] (e.g. clients keyed by name).
    keyed = {"alice": {"full_replay_s": 30, "degraded_s": 300}, "bob": {"full_replay_s": "x"}}
    print(f"* (extra) value inside a dict keyed by name: {keyed}")
    try:
        msgspec.convert(keyed, dict[str, MWindows])
    except msgspec.ValidationError as e:
        print(f"    msgspec         : {e}")
        print(f"      path via regex on str(e): {msgspec_path(e)}  (None: the key is not reported)")
    try:
        TypeAdapter(dict[str, PWindows]).validate_python(keyed, strict=True)
    except ValidationError as e:
        print(f"    pydantic strict : e.errors() (type, loc): {pydantic_paths(e)}")
    print()


# --------------------------------------------------------------------------------------------
# (b) YAML scenario -> typed model, errors mapped to file:line:column and field
# --------------------------------------------------------------------------------------------


class _MStep(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="action"):
    pass


class MConnect(_MStep, tag="connect", frozen=True):
    client: str


class MSend(_MStep, tag="send", frozen=True):
    client: str
    text: str
    count: int = 1


class MDrop(_MStep, tag="drop", frozen=True):
    duration_s: float


class MExpect(_MStep, tag="expect_resume", frozen=True):
    client: str
    outcome: Literal["full", "degraded", "session_expired"]


class MScenario(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    steps: tuple[MConnect | MSend | MDrop | MExpect, ...]
    description: str = ""


class PConnect(_PModel):
    action: Literal["connect"]
    client: str


class PSend(_PModel):
    action: Literal["send"]
    client: str
    text: str
    count: int = 1


class PDrop(_PModel):
    action: Literal["drop"]
    duration_s: float


class PExpect(_PModel):
    action: Literal["expect_resume"]
    client: str
    outcome: Literal["full", "degraded", "session_expired"]


class PScenario(_PModel):
    name: str
    # list, not tuple: in strict mode pydantic rejects a Python list (what YAML gives) for a
    # tuple field; msgspec.convert accepts it.
    steps: list[Annotated[PConnect | PSend | PDrop | PExpect, Field(discriminator="action")]]
    description: str = ""


P_SCENARIO: TypeAdapter[PScenario] = TypeAdapter(PScenario)

SCENARIO_FILE = "scenarios/example-broken.yaml"
SCENARIO_YAML = """\
name: drop-15s-full-resume
description: a 15 s gap must resume in full
steps:
  - action: connect
    client: alice
  - action: send
    client: alice
    text: hello
    count: three
  - action: drop
    duraton_s: 15
  - action: expect_resume
    client: alice
    outcome: full
"""


def locate(root: yaml.Node, path: Sequence[PathElem], tag_field: str) -> tuple[yaml.Mark, str]:
    """Walk the composed YAML node tree along ``path``; return the best mark and a field label.

    Path elements that name a union tag (pydantic puts them into ``loc``) are recognised by the
    mapping's ``tag_field`` value and skipped. A field that is absent (missing-field errors)
    resolves to the enclosing mapping.
    """
    node = root
    mark = root.start_mark
    label: list[str] = []
    for elem in path:
        if isinstance(node, yaml.SequenceNode) and isinstance(elem, int):
            node = node.value[elem]
            mark = node.start_mark
            label.append(f"[{elem}]")
        elif isinstance(node, yaml.MappingNode) and isinstance(elem, str):
            found = [(k, v) for k, v in node.value if k.value == elem]
            if found:
                key, node = found[0]
                mark = key.start_mark
                label.append(f".{elem}")
                continue
            tag = [v.value for k, v in node.value if k.value == tag_field]
            if tag and tag[0] == elem:
                continue  # the union tag pydantic inserts into loc
            label.append(f".{elem}")
            break
        else:
            label.append("[?]" if elem is None else f".{elem}")
            break
    return mark, "".join(label).lstrip(".")


def _where(mark: yaml.Mark) -> str:
    return f"{SCENARIO_FILE}:{mark.line + 1}:{mark.column + 1}"


def run_yaml() -> None:
    root = yaml.compose(SCENARIO_YAML, Loader=yaml.SafeLoader)
    assert root is not None
    data = yaml.safe_load(SCENARIO_YAML)
    print(f"YAML scenario {SCENARIO_FILE} (count: three on line 9, duraton_s typo on line 11):")
    try:
        msgspec.convert(data, MScenario)
        print("  msgspec : ACCEPTED")
    except msgspec.ValidationError as e:
        mark, field = locate(root, msgspec_path(e), "action")
        print(f"  msgspec : {_where(mark)}: {field}: {e}  (first error only)")
    try:
        P_SCENARIO.validate_python(data, strict=True)
        print("  pydantic: ACCEPTED")
    except ValidationError as e:
        for err in e.errors(include_url=False):
            mark, field = locate(root, tuple(err["loc"]), "action")
            print(f"  pydantic: {_where(mark)}: {field}: {err['msg']} [{err['type']}]")
    print()


# --------------------------------------------------------------------------------------------


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats; the min is kept")
    parser.add_argument("--seed", type=int, default=20260101, help="seed for texts and mix order")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"bench.codec_choice  {now}")
    print(
        f"python {platform.python_version()} ({sys.implementation.name}), "
        f"{platform.system()} {platform.machine()}, cpu: {_cpu()}"
    )
    print(
        "msgspec "
        + version("msgspec")
        + ", pydantic "
        + version("pydantic")
        + " (pydantic-core "
        + version("pydantic-core")
        + "), pyyaml "
        + version("pyyaml")
        + f"; repeats={args.repeats}, seed={args.seed}"
    )
    print()
    samples = sample_messages(random.Random(args.seed))
    check_round_trips(samples)
    run_timings(samples, args.repeats, args.seed)
    run_errors()
    run_yaml()
    print(f"total time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
