"""The driver conformance kit, run on the socketio driver against the real Socket.IO host on
127.0.0.1 (a fresh Node process for each check).

Three checks of the kit assume a server that Socket.IO is not, and fail on the server's
behaviour rather than the driver's; each is a finding of docs/servers.md with its scenario,
and is kept here as a strict expected failure, so a change in Socket.IO shows up here too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from harness.driver.conformance import DriverConformance, Kit, Subject
from harness.driver.socketio import factory
from harness.targets.socketio import SocketIOTarget

pytestmark = [pytest.mark.slow]


class TestSocketIODriver(DriverConformance):
    """The whole kit on the socketio driver and the Node host of targets/socketio/."""

    @pytest_asyncio.fixture
    async def driver_under_test(self) -> AsyncIterator[Subject]:
        target = SocketIOTarget()
        await target.start()
        try:
            yield Subject.of_target(factory, target)
        finally:
            await target.stop()

    @pytest.mark.xfail(
        strict=True,
        reason="Socket.IO cannot recover a session that received no event yet: the kit "
        "resumes one (finding 4, finding_no_event_no_recovery.yaml)",
    )
    async def test_resume_previous_token(self, kit: Kit) -> None:
        await super().test_resume_previous_token(kit)

    @pytest.mark.xfail(
        strict=True,
        reason="Socket.IO stores a session only once it disconnects: a live session that never "
        "dropped cannot be taken over (takeover_of_a_never_dropped_session.yaml)",
    )
    async def test_take_over(self, kit: Kit) -> None:
        await super().test_take_over(kit)

    @pytest.mark.xfail(
        strict=True,
        reason="Socket.IO never closes or tells the connection whose session is taken "
        "(finding 2, finding_takeover_steals_replies.yaml)",
    )
    async def test_close_reason(self, kit: Kit) -> None:
        await super().test_close_reason(kit)
