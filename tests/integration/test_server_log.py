"""The server's log at INFO: its own lines, not websockets' two lines per connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_server.aio_client import AsyncClient
from reference_server.launcher import ServerProcess
from reference_server.protocol import Attached

from .conftest import SECRET, token


@pytest.mark.asyncio
@pytest.mark.parametrize(("level", "per_connection"), [("INFO", False), ("DEBUG", True)])
async def test_connections_are_not_logged_at_info_and_are_at_debug(
    tmp_path: Path, level: str, per_connection: bool
) -> None:
    """At INFO a connection leaves no "connection open" line; at DEBUG websockets' lines show."""
    log = tmp_path / "server.log"
    env = {"REFERENCE_SERVER_AUTH_SECRET": SECRET}
    args = ["--store", "memory", "--log-level", level]
    async with ServerProcess(args, env=env, log_path=log) as server:
        client = AsyncClient(server.url, token())
        assert isinstance(await client.connect(5), Attached)
        await client.bye()
    text = log.read_text()
    assert "listening on" in text
    assert per_connection == ("connection open" in text)
