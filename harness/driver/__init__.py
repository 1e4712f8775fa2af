"""Drivers: how the harness talks to one kind of target; nothing above them knows a wire format."""

from .base import Delivery, Driver, DriverError, Outcome, Terms, Turn

__all__ = ["Delivery", "Driver", "DriverError", "Outcome", "Terms", "Turn"]
