"""The harness's Toxiproxy client against a real Toxiproxy, cross-checked with toxiproxy-python."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from toxiproxy import Toxiproxy  # the ecosystem's own client, used only as an independent check

from harness.faults.toxiproxy_client import ToxiproxyApiError, ToxiproxyClient
from harness.faults.toxiproxy_server import ToxiproxyServer

pytestmark = [pytest.mark.toxiproxy, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def api() -> AsyncIterator[ToxiproxyClient]:
    """A client of a freshly started Toxiproxy."""
    async with ToxiproxyServer() as server, ToxiproxyClient(server.url) as client:
        yield client


def _independent_view(url: str) -> Toxiproxy:
    parts = urlsplit(url)
    view = Toxiproxy()
    view.update_api_consumer(parts.hostname, parts.port)
    return view


async def test_created_proxy_and_toxic_are_what_toxiproxy_reports(api: ToxiproxyClient) -> None:
    """A proxy and a toxic made by the harness read back the same through toxiproxy-python."""
    proxy = await api.create_proxy("check", "127.0.0.1:9")
    await api.add_toxic("check", "slow", "latency", {"latency": 120, "jitter": 30}, toxicity=0.5)
    view = await asyncio.to_thread(_independent_view, api.url)
    seen = await asyncio.to_thread(view.get_proxy, "check")
    assert (proxy.listen, "127.0.0.1:9") == (seen.listen, seen.upstream)
    toxics = await asyncio.to_thread(seen.toxics)
    toxic = toxics["slow"]
    assert ("latency", 0.5, {"latency": 120, "jitter": 30}) == (
        toxic.type,
        toxic.toxicity,
        toxic.attributes,
    )


async def test_disable_and_enable_are_visible(api: ToxiproxyClient) -> None:
    """Disabling a proxy is what Toxiproxy then reports, and so is enabling it again."""
    await api.create_proxy("flip", "127.0.0.1:9")
    assert (await api.set_enabled("flip", False)).enabled is False
    assert (await api.proxies())["flip"].enabled is False
    assert (await api.set_enabled("flip", True)).enabled is True


async def test_errors_are_infrastructure_errors(api: ToxiproxyClient) -> None:
    """A call Toxiproxy refuses raises ToxiproxyApiError with its status."""
    with pytest.raises(ToxiproxyApiError, match="404"):
        await api.delete_proxy("no-such-proxy")


async def test_a_silent_server_times_out_instead_of_hanging() -> None:
    """A control API that never answers is an error after the timeout, not a hang."""

    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ToxiproxyClient(f"http://127.0.0.1:{port}", timeout=0.3) as client:
            with pytest.raises(ToxiproxyApiError, match="in time"):
                await client.proxies()
    finally:
        done.set()
        server.close()
        await server.wait_closed()
