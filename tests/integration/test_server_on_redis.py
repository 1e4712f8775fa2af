"""The server's integration tests again, with every server on a real Redis (one node).

The tests of test_server.py and test_protocol_1_1.py are collected here a second time, with
their ``config()`` and the ``server`` fixture pointed at the session's redis-server (emptied
before each test). Four of them read the store synchronously from the test (``holds``,
``tombstone``) or count detached sessions against ``--max-sessions``; a node of a cluster
keeps only its attached sessions in memory and its store is awaited, so those four have
Redis counterparts below instead. So has the health check: a node adds its store link to
``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from reference_server.aio_client import AsyncClient
from reference_server.app import ReferenceServer
from reference_server.config import ServerConfig
from reference_server.protocol import Attached, RejectedByServer
from reference_server.protocol.session import SessionConfig
from reference_server.store.redis import RedisStore

from . import conftest, test_protocol_1_1, test_server
from .test_protocol_1_1 import *  # noqa: F403 - collected again, on Redis
from .test_server import *  # noqa: F403 - collected again, on Redis
from .test_server import _advance

NOT_ON_A_NODE = (
    "test_long_gap_expires_and_leaves_no_state",
    "test_bye_ends_the_session_for_good",
    "test_processed_request_ids_are_bounded_in_the_session_and_the_store",
    "test_a_full_server_answers_hello_with_overloaded_and_keeps_serving_resumes",
    "test_health_and_metrics_answer_over_http",
)
for _name in NOT_ON_A_NODE:
    del globals()[_name]

Factory = Callable[..., AsyncClient]


@pytest.fixture(autouse=True)
def _on_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``config()`` of the imported tests names the Redis store."""

    def on_redis(**overrides: Any) -> ServerConfig:
        return conftest.config(**{"store": redis_url, **overrides})

    for module in (test_server, test_protocol_1_1):
        monkeypatch.setattr(module, "config", on_redis)


@pytest_asyncio.fixture
async def server(redis_url: str) -> AsyncIterator[ReferenceServer]:
    """A reference server on the Redis store."""
    async with ReferenceServer(conftest.config(store=redis_url, node_id="n1")) as running:
        yield running


def _redis(server: ReferenceServer) -> RedisStore:
    assert server.cluster is not None
    return server.cluster.redis


@pytest.mark.asyncio
async def test_long_gap_expires_on_redis_and_leaves_no_state(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """10 min away: the sweep expires the session in Redis, which holds nothing of it but
    its tombstone; a resume is told session_expired."""
    client = client_factory()
    await client.connect()
    await client.chat("my name is Ada")
    assert client.protocol.session is not None
    session_id = client.protocol.session.session_id
    await client.drop()
    await _advance(server, 600)
    nothing = dict.fromkeys(("sessions", "replay", "request_ids", "history", "context"), 0)
    assert nothing == await _redis(server).holds(session_id)
    assert "expired" == await _redis(server).tombstone(session_id)
    rejected = await client.resume()
    assert isinstance(rejected, RejectedByServer)
    assert ("session_expired", True) == (rejected.reason, rejected.final)


@pytest.mark.asyncio
async def test_health_and_metrics_of_a_node_say_its_store_link_is_up(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """GET /healthz of a node says ok, then that its store and subscription are up; GET
    /metrics has the protocol's counters and the store link's (up, subscribed, no errors)."""
    await client_factory().connect()
    base = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        health = await http.get(base + "/healthz")
        metrics = await http.get(base + "/metrics")
    assert (200, "ok\nstore: up\nsubscription: up\n") == (health.status_code, health.text)
    assert "ws_sessions_opened_total 1.0" in metrics.text
    assert "ws_store_up 1.0" in metrics.text
    assert "ws_store_subscribed 1.0" in metrics.text
    for operation in ("commit", "load", "publish", "subscribe", "sweep"):
        assert f'ws_store_errors_total{{operation="{operation}"}} 0.0' in metrics.text


@pytest.mark.asyncio
async def test_bye_deletes_the_session_from_redis(
    server: ReferenceServer, client_factory: Factory
) -> None:
    """After bye, Redis holds nothing of the session but a ``closed`` tombstone."""
    client = client_factory()
    await client.connect()
    await client.chat("hello")
    assert client.protocol.session is not None
    session_id = client.protocol.session.session_id
    await client.bye()
    redis = _redis(server)
    await server.registry.writer.drain(5)  # type: ignore[attr-defined]  # behind the bye
    assert "closed" == await redis.tombstone(session_id)
    assert 0 == (await redis.holds(session_id))["sessions"]
    assert session_id not in server.hosts


@pytest.mark.asyncio
async def test_processed_request_ids_are_bounded_in_redis(redis_url: str) -> None:
    """§6.1: Redis keeps only the request ids of the last ``request_ids_kept`` client seqs."""
    config = conftest.config(store=redis_url, session=SessionConfig(request_ids_kept=2))
    async with ReferenceServer(config) as server:
        client = AsyncClient(server.url, conftest.token())
        try:
            await client.connect()
            for n in range(1, 5):
                await client.reply_to(await client.send_user_message(f"message {n}", f"m{n}"))
            assert client.protocol.session is not None
            session_id = client.protocol.session.session_id
            assert 2 == (await _redis(server).holds(session_id))["request_ids"]
            loaded = await _redis(server).load(session_id)
            assert loaded is not None
            assert (("m3", 3), ("m4", 4)) == loaded.stored.request_ids
        finally:
            await client.drop()


@pytest.mark.asyncio
async def test_max_sessions_counts_the_sessions_attached_to_the_node(redis_url: str) -> None:
    """--max-sessions on a node bounds the sessions attached to it: a detached session lives
    in Redis, not on the node, and a resume is served while the node is full."""
    async with ReferenceServer(conftest.config(store=redis_url, max_sessions=1)) as server:
        first, second = (
            AsyncClient(server.url, conftest.token()),
            AsyncClient(server.url, conftest.token()),
        )
        try:
            assert isinstance(await first.connect(), Attached)
            refused = await second.connect()
            assert isinstance(refused, RejectedByServer)
            assert "overloaded" == refused.reason
            await first.drop()
            await asyncio.sleep(0.05)
            assert isinstance(await first.resume(), Attached)
        finally:
            await first.drop()
            await second.drop()
