"""The socketio driver against the real Socket.IO host on loopback: the driver contract.

These are the contract checks of docs/architecture.md ("The driver contract"), written here
for this driver because the shared conformance kit (``harness.driver.conformance``) is not on
main yet: what an outcome names, what is observed and how, that every wait keeps its bound and
every failure is a ``DriverError``. Real sockets to a real Node process, no proxy.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from harness.driver.base import CAPABILITIES, ClientConfig, Driver, DriverError
from harness.driver.registry import load
from harness.driver.socketio import NOT_RECOVERED, SocketIODriver, factory
from harness.history import Closed, Delivered, Observation, Outcome
from harness.targets.base import TargetError
from harness.targets.socketio import HostProcess, SocketIOTarget, Windows
from tests.conftest import scaled

pytestmark = [pytest.mark.slow]


@pytest_asyncio.fixture
async def target() -> AsyncIterator[SocketIOTarget]:
    """A Socket.IO host with the suite's short windows."""
    running = SocketIOTarget()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


class Client:
    """A driver and what it observed."""

    def __init__(self, target: SocketIOTarget, user: str = "alice", name: str = "c") -> None:
        self.seen: list[Observation] = []
        self.closed = asyncio.Event()
        config = ClientConfig(name=name, url=target.url, credential=target.credential_for(user))
        self.driver: Driver = factory(config, self.observe)

    def observe(self, observation: Observation) -> None:
        self.seen.append(observation)
        if isinstance(observation, Closed):
            self.closed.set()

    def delivered(self) -> list[Delivered]:
        return [o for o in self.seen if isinstance(o, Delivered)]


def test_the_factory_is_found_by_name_and_declares_only_known_capabilities() -> None:
    """`--driver socketio` finds this factory; its promises come from the fixed vocabulary."""
    assert load("socketio") is factory
    assert factory.info.capabilities <= CAPABILITIES.keys()
    assert "opaque" == factory.info.positions.order
    assert {"history", "notices"}.isdisjoint(factory.info.capabilities)


@pytest.mark.asyncio
async def test_connect_is_a_new_session_whose_replies_are_observed_at_opaque_offsets(
    target: SocketIOTarget,
) -> None:
    """A new session names its session and stream (the pid); each reply part is a Delivered
    on that stream at a distinct offset, the last one final."""
    client = Client(target)
    outcome = await client.driver.connect(scaled(5))
    assert ("new", outcome.session) == (outcome.kind, outcome.stream)
    message = await client.driver.send_message("my name is Ada")
    assert 2 == await client.driver.await_reply(message, scaled(5))
    parts = client.delivered()
    assert [outcome.stream] * 2 == [d.stream for d in parts]
    assert [False, True] == [d.final for d in parts]
    assert 2 == len({d.position for d in parts})
    context = await client.driver.fetch_context(scaled(5))
    assert ("alice", {"name": "Ada"}, ["user:alice"]) == (
        context["user"],
        context["memory"],
        context["rooms"],
    )
    await client.driver.aclose()


@pytest.mark.asyncio
async def test_resume_after_a_reset_recovers_the_same_session_after_the_last_offset(
    target: SocketIOTarget,
) -> None:
    """The same pid back is `full`, continuing after the last offset received; a message
    sent while disconnected is sent after the recovery and answered."""
    client = Client(target)
    first = await client.driver.connect(scaled(5))
    await client.driver.await_reply(await client.driver.send_message("hello"), scaled(5))
    last = client.delivered()[-1].position
    await client.driver.disconnect("reset")
    queued = await client.driver.send_message("sent while away")
    assert False is client.driver.connected
    outcome = await client.driver.resume(scaled(5))
    assert ("full", first.session, last) == (outcome.kind, outcome.session, outcome.after)
    assert 2 == await client.driver.await_reply(queued, scaled(5))
    await client.driver.aclose()


@pytest.mark.asyncio
async def test_a_fresh_session_instead_of_a_recovery_is_rejected_not_recovered(
    target: SocketIOTarget,
) -> None:
    """Past maxDisconnectionDuration Socket.IO starts a new session silently; the driver says
    so, and leaves that session."""
    target_windows = target.windows
    client = Client(target)
    await client.driver.connect(scaled(5))
    await client.driver.await_reply(await client.driver.send_message("hello"), scaled(5))
    await client.driver.disconnect("close")
    await asyncio.sleep(target_windows.max_disconnection_s + 0.5)
    outcome = await client.driver.resume(scaled(5))
    assert (Outcome(kind="rejected", reason=NOT_RECOVERED, replayed=0), False) == (
        outcome,
        client.driver.connected,
    )


@pytest.mark.asyncio
async def test_a_bad_credential_is_rejected_with_the_middlewares_reason(
    target: SocketIOTarget,
) -> None:
    """A refused namespace connect is an outcome, not an exception."""
    config = ClientConfig(name="x", url=target.url, credential="alice.00")
    driver = factory(config, lambda _: None)
    assert Outcome(kind="rejected", reason="auth_failed") == await driver.connect(scaled(5))


@pytest.mark.asyncio
async def test_the_server_ending_the_socket_is_observed_with_its_reason(
    target: SocketIOTarget,
) -> None:
    """A restart closes the connection: a Closed observation, and the client is disconnected."""
    client = Client(target)
    await client.driver.connect(scaled(5))
    await target.restart()
    await asyncio.wait_for(client.closed.wait(), scaled(5))
    assert False is client.driver.connected


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_every_failure_is_a_driver_error_within_its_bound() -> None:
    """Nothing listening, no session to resume, no reply coming, not connected: each is a
    DriverError, and none waits longer than it was given."""
    url = f"ws://127.0.0.1:{_closed_port()}/socket.io/"
    config = ClientConfig(name="c", url=url, credential="")
    driver = SocketIODriver(config, lambda _: None)
    started = time.monotonic()
    with pytest.raises(DriverError):
        await driver.connect(0.5)
    with pytest.raises(DriverError):
        await driver.resume(0.5)
    with pytest.raises(DriverError):
        await driver.resume(0.5, token="previous")
    with pytest.raises(DriverError):
        await driver.await_reply("nothing", 0.2)
    with pytest.raises(DriverError):
        await driver.fetch_context(0.2)
    with pytest.raises(DriverError):
        await driver.send_raw("42[]", 0.2)
    with pytest.raises(DriverError):
        await driver.fetch_history(0.2)
    assert time.monotonic() - started < scaled(3)
    await driver.aclose()
    await driver.aclose()


@pytest.mark.asyncio
async def test_a_host_that_does_not_start_is_a_target_error_naming_its_log() -> None:
    """A bad option makes the host exit: the error names the log and shows its tail."""
    target = SocketIOTarget(Windows(ping_interval_s=-1))
    with pytest.raises(TargetError, match=r"did not start.*host\.log") as caught:
        await target.start()
    assert "--ping-interval-ms must be an integer" in str(caught.value)
    await target.stop()
    assert target.process.log_path.is_file()


@pytest.mark.asyncio
async def test_the_host_start_is_bounded(tmp_path: Path) -> None:
    """A host that states no URL in time is stopped and reported, not waited for."""
    process = HostProcess([], env={"SOCKETIO_HOST_SECRET": "x"}, log_path=tmp_path / "h.log")
    process.start_timeout = 0.01
    with pytest.raises(TargetError, match="no URL"):
        await process.start()
    assert process.process is not None
    assert process.process.returncode is not None
