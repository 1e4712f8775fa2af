"""Fault layer: a real Toxiproxy server between the harness clients and the target."""

from harness.errors import ToxiproxyNotFoundError, ToxiproxyStartError
from harness.faults.toxiproxy_server import (
    TOXIPROXY_VERSION,
    ToxiproxyServer,
    find_toxiproxy_server,
    install_instructions,
)

__all__ = [
    "TOXIPROXY_VERSION",
    "ToxiproxyNotFoundError",
    "ToxiproxyServer",
    "ToxiproxyStartError",
    "find_toxiproxy_server",
    "install_instructions",
]
