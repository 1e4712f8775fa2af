"""WebSocket session-continuity harness.

Runs scenarios against a WebSocket service through a real Toxiproxy fault layer, records what
happened, checks it, and writes reports. See README.md and docs/ for the details.
"""

__version__ = "0.1.0"
