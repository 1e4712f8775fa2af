"""The reference driver against a real reference server: rules of the protocol it keeps."""

from __future__ import annotations

import dataclasses
import time

import pytest

from harness.driver.base import ClientConfig, DriverError, Route
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


@pytest.mark.asyncio
async def test_a_resume_after_a_final_rejection_is_a_driver_error() -> None:
    """Rejected `ip_denied` (final: the client holds the session no more), a second resume is
    a `DriverError` that says so, which fails the step, not an exception of the client's
    state machine, which would end the scenario as a harness error."""
    server_config = config()
    server_config = dataclasses.replace(
        server_config, session=dataclasses.replace(server_config.session, ip_policy="deny")
    )
    async with ReferenceServer(server_config) as server:
        driver = ReferenceDriver(
            ClientConfig(name="c", url=server.url, credential=token("alice")), lambda o: None
        )
        try:
            driver.set_route(Route(source_ip="127.0.0.1"))
            assert "new" == (await driver.connect(5.0)).kind
            await driver.disconnect("reset")
            driver.set_route(Route(source_ip="127.0.0.2"))
            outcome = await driver.resume(5.0)
            assert ("rejected", "ip_denied") == (outcome.kind, outcome.reason)
            with pytest.raises(DriverError, match="no session"):
                await driver.resume(5.0)
        finally:
            await driver.aclose()
