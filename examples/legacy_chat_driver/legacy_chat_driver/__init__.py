"""The ``legacy_chat`` driver plugin of ws-continuity-harness, for examples/legacy_chat.

The harness finds it by name through the entry point in this package's ``pyproject.toml``::

    [project.entry-points."ws_continuity.drivers"]
    legacy_chat = "legacy_chat_driver:factory"

so that ``harness run examples/legacy_chat/scenarios --driver legacy_chat`` starts the example
server (``embedded``) for each scenario and plays its clients with ``LegacyChatDriver``.
docs/drivers.md ("Writing your own driver") walks through it.
"""

from __future__ import annotations

from harness.driver.base import ClientConfig, Driver, DriverFactory, EmbeddedTargets, Observe
from harness.scenario.model import Scenario
from harness.targets.base import Target

from .driver import INFO, NO_REPLAY, NOT_RECOVERED, LegacyChatDriver
from .target import LegacyChatTarget

__all__ = [
    "INFO",
    "NOT_RECOVERED",
    "NO_REPLAY",
    "EmbeddedLegacyChat",
    "LegacyChatDriver",
    "LegacyChatFactory",
    "LegacyChatTarget",
    "factory",
]


class EmbeddedLegacyChat:
    """The example server, one child process per scenario (used when no ``--target``)."""

    def capabilities(self, *, virtual_clock: bool) -> frozenset[str]:
        return LegacyChatTarget.capabilities

    def target(self, scenario: Scenario, *, virtual_clock: bool) -> Target:
        return LegacyChatTarget()


class LegacyChatFactory:
    """What the entry point names: the driver's info, its embedded server, and its clients."""

    info = INFO
    embedded: EmbeddedTargets = EmbeddedLegacyChat()

    def __call__(self, config: ClientConfig, observe: Observe) -> Driver:
        # Returned as a `Driver`: mypy checks here that LegacyChatDriver keeps the contract.
        return LegacyChatDriver(config, observe)


factory: DriverFactory = LegacyChatFactory()
