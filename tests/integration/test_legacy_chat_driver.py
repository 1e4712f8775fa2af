"""The example plugin ``legacy_chat``: found by name as an installed plugin, and its mapping of
the scenario language onto a protocol with no sequence numbers, no replay and no resume,
against the real example server on 127.0.0.1 (no proxy)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import pytest_asyncio

from harness.driver import registry
from harness.driver.base import ClientConfig, Driver, DriverError
from harness.history import Closed, Delivered, Observation, Outcome
from harness.targets.base import TargetError
from tests.conftest import scaled
from tests.legacy_chat_plugin import NO_REPLAY, NOT_RECOVERED, LegacyChatTarget, factory

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "examples" / "legacy_chat" / "scenarios"


def test_the_plugin_is_found_by_name_through_its_own_distribution() -> None:
    """`--driver legacy_chat` resolves to the entry point of the separately installed package
    legacy-chat-driver, not to anything of the harness's own."""
    found = [ep for ep in entry_points(group=registry.GROUP) if ep.name == "legacy_chat"]
    assert 1 == len(found)
    assert found[0].dist is not None
    assert ("legacy-chat-driver", "legacy_chat_driver:factory") == (
        found[0].dist.name,
        found[0].value,
    )
    assert "legacy_chat" in registry.available()
    assert registry.load("legacy_chat") is factory


def test_a_fresh_harness_process_plans_the_example_suite_with_the_plugin() -> None:
    """`harness plan ... --driver legacy_chat` in a new process finds the plugin and its
    embedded server's capabilities: every scenario of the suite would run."""
    done = subprocess.run(
        [sys.executable, "-m", "harness", "plan", str(SUITE), "--driver", "legacy_chat"],
        capture_output=True,
        text=True,
        timeout=scaled(30),
        check=False,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    count = len(list(SUITE.glob("*.yaml")))
    assert f"{count} of {count} scenarios would run" in done.stdout


def test_the_declaration_is_what_the_protocol_offers() -> None:
    """Opaque positions (the client's own count), and no capability the protocol lacks."""
    info = factory.info
    assert ("opaque", True) == (info.positions.order, info.positions.continues_across_sessions)
    assert {"chat", "resume", "history", "context", "raw_frames"} <= info.capabilities
    lacking = {"resume_previous_token", "take_over", "resend", "history_pages", "notices"}
    assert set() == lacking & info.capabilities
    assert {"restart"} == factory.embedded.capabilities(virtual_clock=True)  # type: ignore[attr-defined]


@pytest_asyncio.fixture
async def target() -> AsyncIterator[LegacyChatTarget]:
    """A fresh example server."""
    running = LegacyChatTarget()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


class Client:
    """A driver and what it observed."""

    def __init__(self, target: LegacyChatTarget, user: str = "alice") -> None:
        self.seen: list[Observation] = []
        config = ClientConfig(name="c", url=target.url, credential=target.credential_for(user))
        self.driver: Driver = factory(config, self.seen.append)

    def delivered(self) -> list[Delivered]:
        return [o for o in self.seen if isinstance(o, Delivered)]

    async def chat(self, text: str) -> int:
        return await self.driver.await_reply(await self.driver.send_message(text), scaled(5))


@pytest.mark.asyncio
async def test_replies_are_observed_in_arrival_order_on_the_users_stream(
    target: LegacyChatTarget,
) -> None:
    """The session and stream are the user; a streamed reply is five deliveries at distinct
    positions, in arrival order, the last one final, whose texts make the stored reply."""
    client = Client(target)
    outcome = await client.driver.connect(scaled(5))
    assert ("new", "alice", "alice") == (outcome.kind, outcome.session, outcome.stream)
    assert 5 == await client.chat("slowly: the sea")
    parts = [d for d in client.delivered() if d.kind in ("agent_chunk", "agent_response")]
    assert [False] * 4 + [True] == [d.final for d in parts]
    positions = [str(d.position) for d in parts]
    assert sorted(positions) == positions
    assert len(set(positions)) == len(positions)
    turns = await client.driver.fetch_history(scaled(5))
    assert "".join(d.text or "" for d in parts) == turns[-1].text
    await client.driver.aclose()


@pytest.mark.asyncio
async def test_a_reconnection_is_degraded_no_replay_and_finds_the_conversation(
    target: LegacyChatTarget,
) -> None:
    """Reconnecting with the same token keeps the user's history and context; it is never
    `full`, since nothing is replayed; positions go on under a new connection number."""
    client = Client(target)
    await client.driver.connect(scaled(5))
    await client.chat("my name is Ada")
    before = await client.driver.fetch_context(scaled(5))
    last = client.delivered()[-1].position
    await client.driver.disconnect("reset")
    outcome = await client.driver.resume(scaled(5))
    expected = Outcome(
        kind="degraded",
        warnings=(NO_REPLAY,),
        replayed=0,
        session="alice",
        stream="alice",
        after=last,
    )
    assert expected == outcome
    assert before == await client.driver.fetch_context(scaled(5))
    assert str(client.delivered()[-1].position).startswith("002-")
    await client.driver.aclose()


@pytest.mark.asyncio
async def test_a_reconnection_to_a_restarted_server_is_rejected_not_recovered(
    target: LegacyChatTarget,
) -> None:
    """The server welcomes the client as before; the history it answers lacks what the client
    saw answered, so the resume is a rejection and the client holds no connection."""
    client = Client(target)
    await client.driver.connect(scaled(5))
    await client.chat("my name is Ada")
    await target.restart()
    outcome = await client.driver.resume(scaled(5))
    assert (Outcome(kind="rejected", reason=NOT_RECOVERED, replayed=0), False) == (
        outcome,
        client.driver.connected,
    )
    assert any(isinstance(o, Closed) for o in client.seen), "the restart's close was observed"
    assert "new" == (await client.driver.connect(scaled(5))).kind
    assert [] == await client.driver.fetch_history(scaled(5))
    await client.driver.aclose()


@pytest.mark.asyncio
async def test_a_reply_whose_connection_is_gone_fails_at_once(target: LegacyChatTarget) -> None:
    """The server answers only on the connection that asked: once that one is reset, waiting
    for the reply ends at once with a DriverError, and the reconnection brings nothing of it."""
    client = Client(target)
    await client.driver.connect(scaled(5))
    message = await client.driver.send_message("slowly: a story")
    with pytest.raises(DriverError):
        await client.driver.await_reply(message, 0.1)
    await client.driver.disconnect("reset")
    started = time.monotonic()
    with pytest.raises(DriverError, match="the connection it was sent on is gone"):
        await client.driver.await_reply(message, scaled(5))
    assert time.monotonic() - started < scaled(0.5)
    await client.driver.resume(scaled(5))
    await asyncio.sleep(1.0)  # the agent finishes the reply meanwhile, and sends it nowhere
    parts = [d for d in client.delivered() if d.reply_to == message]
    assert 1 <= len(parts) < 5
    await client.driver.aclose()


@pytest.mark.asyncio
async def test_a_message_sent_while_disconnected_is_sent_at_the_reconnection(
    target: LegacyChatTarget,
) -> None:
    """A message sent with no connection waits for the next one, and is answered there."""
    client = Client(target)
    await client.driver.connect(scaled(5))
    await client.driver.disconnect("close")
    message = await client.driver.send_message("set budget = 1200")
    assert False is client.driver.connected
    assert "degraded" == (await client.driver.resume(scaled(5))).kind
    assert 1 == await client.driver.await_reply(message, scaled(5))
    await client.driver.aclose()


@pytest.mark.asyncio
async def test_a_refused_token_is_rejected_auth_failed(target: LegacyChatTarget) -> None:
    """HTTP 401 at the handshake is the protocol's only refusal: an outcome, not an error."""
    config = ClientConfig(name="x", url=target.url, credential="alice.00")
    driver = factory(config, lambda _: None)
    assert Outcome(kind="rejected", reason="auth_failed") == await driver.connect(scaled(5))
    await driver.aclose()


@pytest.mark.asyncio
async def test_a_server_that_does_not_start_is_a_target_error_naming_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that exits before stating its URL: the error names the log and shows its tail,
    and the log is kept."""
    broken = tmp_path / "server.py"
    broken.write_text("import sys\nsys.exit('no secret for you')\n")
    monkeypatch.setenv("LEGACY_CHAT_SERVER", str(broken))
    target = LegacyChatTarget()
    with pytest.raises(TargetError, match=r"did not start.*server\.log") as caught:
        await target.start()
    assert "no secret for you" in str(caught.value)
    await target.stop()
    assert target.log_path.is_file()
