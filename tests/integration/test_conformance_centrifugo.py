"""The driver conformance kit, run on the centrifugo driver against a real Centrifugo 6.9.1
on 127.0.0.1 (the embedded target, a fresh process for each check). Needs the binary
(``scripts/setup --with-centrifugo``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from harness.driver.centrifugo import factory
from harness.driver.conformance import DriverConformance, Kit, Subject
from harness.targets.centrifugo import CentrifugoTarget

pytestmark = [pytest.mark.slow, pytest.mark.centrifugo]


class TestCentrifugoDriver(DriverConformance):
    """The whole kit on the centrifugo driver and a real Centrifugo."""

    @pytest_asyncio.fixture
    async def driver_under_test(self) -> AsyncIterator[Subject]:
        target = CentrifugoTarget()
        await target.start()
        try:
            yield Subject.of_target(factory, target)
        finally:
            await target.stop()

    @pytest.mark.xfail(
        strict=True,
        reason=(
            "the kit provokes a close by a take-over; Centrifugo has none: a second connection "
            "recovering the same user's channel leaves the first subscribed, so there is no "
            "close to observe (closes it does make, 3501 and 3012, are reported with their "
            "reason: tests/e2e/test_centrifugo.py)"
        ),
    )
    async def test_close_reason(self, kit: Kit) -> None:
        await super().test_close_reason(kit)
