"""The reference server of the reconnection protocol (docs/protocol.md)."""

__version__ = "0.1.0"
