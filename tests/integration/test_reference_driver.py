"""The reference driver against a real reference server: rules of the protocol it keeps."""

from __future__ import annotations

import time

import pytest

from harness.driver.base import ClientConfig
from harness.driver.reference import ReferenceDriver
from reference_server.app import ReferenceServer

from .conftest import config, token


@pytest.mark.asyncio
async def test_the_driver_waits_out_the_retry_after_of_a_rate_limit_close() -> None:
    """Closed for flooding with `retry_after_ms` (§12), the driver's next resume waits at
    least that long before it reconnects, and the resume is full."""
    async with ReferenceServer(config(max_frames_per_s=20.0, frame_burst=20)) as server:
        driver = ReferenceDriver(
            ClientConfig(name="c", url=server.url, credential=token("alice")), lambda o: None
        )
        try:
            assert "new" == (await driver.connect(5.0)).kind
            for i in range(60):
                if not driver.connected:
                    break
                await driver.send_raw(f'{{"type":"ping","nonce":{i}}}', 0.01)
            assert not driver.connected
            started = time.monotonic()
            outcome = await driver.resume(10.0)
            waited = time.monotonic() - started
        finally:
            await driver.aclose()
    assert "full" == outcome.kind
    # The token bucket's refill time for a burst of 20 at 20 frames/s: 1 s.
    assert waited >= 0.9, f"resumed {waited:.2f} s after the rate-limit close"
