"""A node's lost link to Redis shows in ``/metrics`` and ``/healthz`` (docs/cluster.md,
Health checks), over real sockets: a real redis-server behind a real Toxiproxy proxy, cut or
blackholed, and a node in this process that reaches Redis only through it.

The motivating bug is dotnet/aspnetcore#58971: a lost backplane link left sockets open but
dead, and nothing said so.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from harness.errors import ToxiproxyNotFoundError
from harness.faults.toxiproxy_client import ToxiproxyClient
from harness.faults.toxiproxy_server import ToxiproxyServer
from reference_server.aio_client import AsyncClient, ConnectionLostError
from reference_server.app import ReferenceServer
from reference_server.protocol import Attached, RejectedByServer
from reference_server.redis_process import RedisProcess

from .conftest import config, token

HEALTHY = "ok\nstore: up\nsubscription: up\n"
WAIT_S = 10.0
"""The bound on every wait for the node to notice a change (its Redis bound is 2 s)."""
DOWN = r"ok\nstore: down since (\d+\.\d) s\nsubscription: ({})\n"
"""``/healthz`` of a node whose store link is down; the subscription's state goes in."""


@dataclass
class Link:
    """A node whose store link runs through ``api``'s proxy named ``proxy``."""

    node: ReferenceServer
    api: ToxiproxyClient
    proxy: str
    http: httpx.AsyncClient

    async def health(self) -> str:
        response = await self.http.get(f"http://127.0.0.1:{self.node.port}/healthz")
        assert 200 == response.status_code
        return response.text

    async def metric(self, sample: str) -> float:
        """The value of one sample of ``/metrics``, e.g. ``ws_store_up``."""
        response = await self.http.get(f"http://127.0.0.1:{self.node.port}/metrics")
        for line in response.text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        raise AssertionError(f"no sample {sample} in /metrics")

    async def until_counted(self, sample: str, timeout: float = WAIT_S) -> None:
        """Poll ``/metrics`` until the counter ``sample`` is above 0."""
        async with asyncio.timeout(timeout):
            while True:  # the node's state, seen from outside: nothing to wait on but time
                if 1.0 <= await self.metric(sample):
                    return
                await asyncio.sleep(0.05)

    async def until_health(self, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
        """Poll ``/healthz`` until its body matches ``pattern`` whole."""
        async with asyncio.timeout(timeout):
            while True:  # the node's state, seen from outside: nothing to wait on but time
                found = re.fullmatch(pattern, await self.health())
                if found is not None:
                    return found
                await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def link(redis_process: RedisProcess, redis_url: str) -> AsyncIterator[Link]:
    """Node ``a`` on the test's Redis, through a Toxiproxy proxy of its own."""
    try:
        toxiproxy = ToxiproxyServer()
        await toxiproxy.start()
    except ToxiproxyNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        async with ToxiproxyClient(toxiproxy.url) as api:
            name = f"store-link-health-{redis_process.port}"  # unique on a shared Toxiproxy
            proxy = await api.create_proxy(name, f"127.0.0.1:{redis_process.port}")
            store = f"redis://127.0.0.1:{proxy.port}/0"
            try:
                async with (
                    ReferenceServer(config(store=store, node_id="a")) as node,
                    httpx.AsyncClient(timeout=5.0, trust_env=False) as http,
                ):
                    yield Link(node, api, name, http)
            finally:
                await api.delete_proxy(name)
    finally:
        await toxiproxy.stop()


async def _resume_when_store_answers(client: AsyncClient) -> Attached:
    """Resume until the node accepts: right after the link heals a resume may still be
    refused ``overloaded`` (retry hint) while the node's connections to Redis are made
    again."""
    async with asyncio.timeout(WAIT_S):
        while True:
            answer = await client.resume()
            if isinstance(answer, Attached):
                return answer
            assert isinstance(answer, RejectedByServer)
            assert "overloaded" == answer.reason
            await client.drop()
            await asyncio.sleep((answer.retry_after_ms or 250) / 1000)


async def _unanswered(client: AsyncClient, text: str) -> str:
    """Send a chat turn the node cannot store: no reply comes; return its id."""
    message_id = await client.send_user_message(text)
    with pytest.raises((TimeoutError, ConnectionLostError)):
        await client.reply_to(message_id, timeout=1.0)
    return message_id


async def _assert_up(link: Link) -> None:
    assert HEALTHY == await link.health()
    assert 1.0 == await link.metric("ws_store_up")
    assert 1.0 == await link.metric("ws_store_subscribed")


@pytest.mark.toxiproxy
@pytest.mark.asyncio
async def test_a_cut_store_link_shows_in_metrics_and_healthz_until_it_heals(link: Link) -> None:
    """Up at start; with the proxy disabled a chat turn is not stored, ws_store_up is 0, a
    commit error is counted and /healthz says store and subscription down (still 200, still
    ok); once the proxy is enabled and the client has resumed, everything says up again."""
    await _assert_up(link)
    assert 0.0 == await link.metric('ws_store_errors_total{operation="commit"}')
    client = AsyncClient(link.node.url, token())
    try:
        assert isinstance(await client.connect(), Attached)
        await client.chat("before the cut")

        await link.api.set_enabled(link.proxy, False)
        message_id = await _unanswered(client, "written while the store was cut")
        down = await link.until_health(DOWN.format("down"))
        assert 0.0 == await link.metric("ws_store_up")
        assert 0.0 == await link.metric("ws_store_subscribed")
        await link.until_counted('ws_store_errors_total{operation="commit"}')
        await link.until_counted('ws_store_errors_total{operation="subscribe"}')
        await asyncio.sleep(0.3)  # the figure is the outage's age: it grows
        later = await link.until_health(DOWN.format("down"), timeout=1.0)
        assert float(down[1]) < float(later[1])

        await link.api.set_enabled(link.proxy, True)
        await client.drop()
        assert "full" == (await _resume_when_store_answers(client)).outcome
        await client.reply_to(message_id)  # kept unacknowledged, answered now
        await link.until_health(re.escape(HEALTHY))
        await _assert_up(link)
    finally:
        await client.drop()


@pytest.mark.toxiproxy
@pytest.mark.asyncio
async def test_a_blackholed_store_link_shows_down_after_the_nodes_bound(link: Link) -> None:
    """With the link blackholed (sockets open, nothing passes), the node's 2 s bound runs out:
    ws_store_up 0 and /healthz says store down; the idle subscription's ping goes unanswered,
    so it says subscription down too (sending into a blackhole succeeds: only the missing pong
    shows it); removing the toxics heals it, and after a resume the node says up again."""
    await _assert_up(link)
    client = AsyncClient(link.node.url, token())
    try:
        assert isinstance(await client.connect(), Attached)
        await client.chat("before the blackhole")

        for stream in ("upstream", "downstream"):
            await link.api.add_toxic(
                link.proxy, f"hole-{stream}", "timeout", {"timeout": 0}, stream=stream
            )
        message_id = await _unanswered(client, "written into the blackhole")
        await link.until_counted('ws_store_errors_total{operation="commit"}')  # after 2 s
        await link.until_health(DOWN.format("down"))  # within 2 s + 0.5 s + 2 s of idling
        assert 0.0 == await link.metric("ws_store_up")
        assert 0.0 == await link.metric("ws_store_subscribed")
        await link.until_counted('ws_store_errors_total{operation="subscribe"}')

        for stream in ("upstream", "downstream"):  # removing a timeout toxic closes its sockets
            await link.api.remove_toxic(link.proxy, f"hole-{stream}")
        await client.drop()
        assert "full" == (await _resume_when_store_answers(client)).outcome
        await client.reply_to(message_id)
        await link.until_health(re.escape(HEALTHY))
        await _assert_up(link)
    finally:
        await client.drop()
