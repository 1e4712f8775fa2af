"""Clocks the server runs on. Time is wall-clock seconds so that it survives a restart.

``VirtualClock`` runs with real time plus an offset that an admin can advance: a 10-minute
gap costs one call, while heartbeats and timeouts still see time pass normally.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the time."""

    virtual: bool

    def now(self) -> float:
        """Seconds since the epoch, on this clock."""


class SystemClock:
    """The machine's wall clock."""

    virtual = False

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()


class VirtualClock:
    """Wall clock plus an offset that only grows."""

    virtual = True

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        """Seconds since the epoch, plus every advance so far."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        """Jump forward; time never goes back. Return the new time."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self.offset += seconds
        return self.now()
