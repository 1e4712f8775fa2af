"""The driver conformance kit, run on the reference driver against a real reference server
on 127.0.0.1 (in process, a fresh one for each check)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from harness.driver.conformance import DriverConformance, Subject
from harness.driver.reference import factory
from reference_server.app import ReferenceServer

from .conftest import config, token


class TestReferenceDriver(DriverConformance):
    """The whole kit on the reference driver and the reference server."""

    @pytest_asyncio.fixture
    async def driver_under_test(self) -> AsyncIterator[Subject]:
        # Trusting loopback as a proxy makes X-Forwarded-For count, as the embedded target does.
        async with ReferenceServer(config(trusted_proxies=("127.0.0.1/32",))) as server:
            yield Subject(factory=factory, url=server.url, credential_for=token)
