"""Fixtures for tests over real sockets on 127.0.0.1: an in-process reference server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio
import redis

from reference_server import auth
from reference_server.aio_client import AsyncClient
from reference_server.app import ReferenceServer
from reference_server.config import ServerConfig
from reference_server.redis_process import RedisProcess, RedisUnavailableError

SECRET = "integration-secret-0123456789abcdef0123"
ADMIN = "integration-admin-token"


def config(**overrides: object) -> ServerConfig:
    """A server configuration for tests: virtual clock, fast chunks, memory store."""
    base: dict[str, object] = {
        "virtual_clock": True,
        "admin_token": ADMIN,
        "auth_secret": SECRET,
        "chunk_delay_s": 0.0,
        "store": "memory",
        "sweep_interval_s": 0.05,
    }
    base.update(overrides)
    return ServerConfig(**base)  # type: ignore[arg-type]


def token(user: str = "alice", **kwargs: float) -> str:
    """A credential for ``user`` signed with the test secret."""
    return auth.mint(user, SECRET, **kwargs)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[ReferenceServer]:
    """A reference server with the default test configuration."""
    async with ReferenceServer(config()) as running:
        yield running


@pytest_asyncio.fixture
async def client_factory(
    server: ReferenceServer,
) -> AsyncIterator[Callable[..., AsyncClient]]:
    """Make clients of ``server``; all are dropped at the end."""
    made: list[AsyncClient] = []

    def make(user: str = "alice", **kwargs: object) -> AsyncClient:
        client = AsyncClient(server.url, token(user), **kwargs)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        await client.drop()


@pytest.fixture(scope="session")
def redis_process() -> Iterator[RedisProcess]:
    """One real redis-server for the test session (append-only, its own temporary folder);
    the tests that need it are skipped, with how to install it, when there is none."""
    try:
        process = RedisProcess()
    except RedisUnavailableError as exc:
        pytest.skip(str(exc))
    with process:
        yield process


@pytest.fixture
def redis_url(redis_process: RedisProcess) -> str:
    """The shared redis-server's URL, its database emptied before the test."""
    client = redis.Redis.from_url(redis_process.url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_process.url
