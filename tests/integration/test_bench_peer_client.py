"""``bench.peer_client``, the harness's side of the peer benchmark, against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from bench.echo_server import EchoServerProcess
from bench.throughput import credentials
from reference_server.launcher import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


async def _peer_client(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.peer_client", "--timeout", "40", *args,
        stdout=asyncio.subprocess.PIPE, cwd=ROOT, env={**os.environ, **(env or {})},
    )  # fmt: skip
    async with asyncio.timeout(50):
        out, _ = await proc.communicate()
    assert 0 == proc.returncode
    result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
    return result


@pytest.mark.asyncio
async def test_echo_clients_record_and_check_every_frame() -> None:
    """20 echo clients of 2 turns: all complete, every frame counted, every history checked."""
    async with EchoServerProcess(frames=5, size=100) as echo:
        result = await _peer_client(
            "--target", "echo", "--url", echo.url, "--rate", "200", "--clients", "20",
            "--turns", "2", "--frames", "5",
        )  # fmt: skip
    assert {"started": 20, "completed": 20, "failed": 0, "undelivered": 0} == {
        k: result[k] for k in ("started", "completed", "failed", "undelivered")
    }
    assert 20 * 2 == result["sent"]
    assert 20 * 2 * 5 == result["received"]


@pytest.mark.asyncio
async def test_reference_clients_resume_and_pass_the_delivery_check(tmp_path: Path) -> None:
    """5 reference clients, 2 cycles (connect, then a resume) of 2 turns: no failure, no loss."""
    creds = credentials()
    server = ServerProcess(
        ["--store", "memory", "--chunk-delay", "0"], env=creds.env, log_path=tmp_path / "s.log"
    )
    async with server:
        result = await _peer_client(
            "--target", "reference", "--url", server.url, "--token-env", "PEER_TEST_TOKEN",
            "--rate", "100", "--clients", "5", "--turns", "2", "--cycles", "2",
            env={"PEER_TEST_TOKEN": creds.token},
        )  # fmt: skip
    assert {"completed": 5, "failed": 0, "undelivered": 0, "errors": {}} == {
        k: result[k] for k in ("completed", "failed", "undelivered", "errors")
    }
    assert isinstance(result["ops"], int)
    assert result["ops"] > 5 * 2 * 2 * 4
