"""The peer benchmark's pieces that need no server: Artillery's script, the skip, the profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import peer, profile


def test_reference_script_says_hello_then_loops_turns_of_one_send_and_frames_waits() -> None:
    """Against the reference server: the hello with its welcome match, then N turns over 1..N."""
    script = peer._artillery_script("reference", "ws://127.0.0.1:1/ws", "tok", 100, 300, 3, 0)
    config, flow = script["config"], script["scenarios"][0]["flow"]
    assert "ws" == script["scenarios"][0]["engine"]
    assert [{"duration": 3, "arrivalRate": 100}] == config["phases"]
    assert {"Authorization": "Bearer tok"} == config["ws"]["headers"]
    assert {"json": "$.type", "value": "welcome"} == flow[0]["send"]["match"]
    loop = flow[1]
    assert [1, 2, 3] == loop["over"]
    assert 1 + peer.FRAMES == len(loop["loop"])
    assert all("wait" in step for step in loop["loop"][1:])


def test_echo_hold_script_has_no_hello_and_thinks() -> None:
    """Against the echo server a held client only connects and thinks."""
    script = peer._artillery_script("echo", "ws://127.0.0.1:1/", "", 100, 100, 0, 5.0)
    assert [{"think": 5.0}] == script["scenarios"][0]["flow"]
    assert "headers" not in script["config"]["ws"]


def test_missing_artillery_is_a_reason_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the install, artillery_missing says where it looked and what installs it."""
    monkeypatch.setattr(peer, "ARTILLERY_DIR", tmp_path)
    monkeypatch.setattr(peer, "ARTILLERY_BIN", tmp_path / "node_modules" / ".bin" / "artillery")
    reason = peer.artillery_missing()
    assert reason is not None
    assert "scripts/setup" in reason


def test_profile_parse_folds_lines_and_ranks_own_and_total_time() -> None:
    """py-spy's raw lines become stacks; own time is the innermost frame, total any frame."""
    raw = (
        "<module> (bench/peer_client.py:1);run (harness/x.py:10);write (asyncio/t.py:5) 30\n"
        "<module> (bench/peer_client.py:1);run (harness/x.py:11);parse (websockets/f.py:7) 10\n"
        "<module> (bench/peer_client.py:1);idle (harness/y.py:3) 60\n"
    )
    parsed = profile.parse(raw)
    assert 100 == parsed.samples
    assert ("idle (harness/y.py)", 60) == parsed.top_self(1)[0]
    # <module> is on every stack: left out; run (two lines, one function) holds 40.
    assert [("idle (harness/y.py)", 60), ("run (harness/x.py)", 40)] == parsed.top_total(5)
