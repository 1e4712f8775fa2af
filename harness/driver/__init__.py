"""Drivers: how the harness talks to one kind of target; nothing above them knows a wire format."""

from .base import (
    CAPABILITIES,
    ClientConfig,
    Driver,
    DriverError,
    DriverFactory,
    DriverInfo,
    Observe,
    PositionModel,
    RawAnswer,
    Route,
)

__all__ = [
    "CAPABILITIES",
    "ClientConfig",
    "Driver",
    "DriverError",
    "DriverFactory",
    "DriverInfo",
    "Observe",
    "PositionModel",
    "RawAnswer",
    "Route",
]
