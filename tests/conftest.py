"""One knob for slow machines: ``HARNESS_TIMEOUT_FACTOR`` scales every wait of the tests.

It multiplies pytest-timeout's per-test bound here, the runner's own waits
(``harness.runner.Waits``, which reads the same variable), and the gross bounds tests assert
through ``scaled`` (the way python-websockets scales its tests by one environment factor).
"""

from __future__ import annotations

import pytest

from harness.runner import timeout_factor


def scaled(seconds: float) -> float:
    """``seconds`` times the environment's timeout factor."""
    return seconds * timeout_factor()


def pytest_configure(config: pytest.Config) -> None:
    timeout = getattr(config.option, "timeout", None)
    if timeout:
        config.option.timeout = float(timeout) * timeout_factor()
