"""Everything the reference server can be configured with, in one place."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from reference_server.faults import PLANTED_FAULTS, PlantedFault
from reference_server.protocol import SessionConfig
from reference_server.protocol.addresses import canonical

__all__ = ["PLANTED_FAULTS", "PlantedFault", "ServerConfig"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Options of ``python -m reference_server``; the defaults are the protocol's."""

    host: str = "127.0.0.1"
    port: int = 0
    path: str = "/ws"
    store: str = "memory"
    """``memory``, ``sqlite:PATH``, or ``redis://HOST:PORT/DB``: a node of a cluster."""
    node_id: str | None = None
    """With a Redis store, this node's id (default ``HOST-PID``); stable across restarts."""
    virtual_clock: bool = False
    clock_offset_s: float = 0.0
    """With ``virtual_clock``: where the clock starts, ahead of the wall clock."""
    auth_secret: str = "dev-secret-change-me-0123456789abcdef"
    admin_token: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    """§10.1: which header a trusted proxy reports client addresses in (never both)."""
    session: SessionConfig = field(default_factory=SessionConfig)
    reauth_max_age_s: float = 60.0
    """Under ``require_reauth``, a credential issued this recently counts as re-authentication."""
    chunk_delay_s: float = 0.005
    """Pause between streamed reply chunks, so a reply is really a stream that a drop can cut."""
    sweep_interval_s: float = 0.5
    handshake_timeout_s: float = 10.0
    max_connections: int = 20_000
    """§14: a handshake beyond this many open connections gets HTTP 503 with Retry-After."""
    max_sessions: int | None = None
    """§14: a hello while this many sessions are held gets ``rejected overloaded``."""
    overload_retry_after_ms: int = 1000
    """§14: the retry hint sent with either overload answer."""
    max_frames_per_s: float = 1000.0
    frame_burst: int = 2000
    max_bad_frames: int = 20
    log_format: Literal["text", "json"] = "text"
    planted_fault: PlantedFault | None = None
    """For testing test harnesses only: break one rule of the protocol on purpose."""

    def trusts(self, peer: str) -> bool:
        """Is ``peer`` a proxy whose X-Forwarded-For header we believe?"""
        return _trusted(peer, self.trusted_proxies) if self.trusted_proxies else False


@functools.lru_cache(maxsize=4096)  # asked at every handshake; ipaddress parses slowly
def _trusted(peer: str, proxies: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(canonical(peer))  # ::ffff:10.0.0.1 is 10.0.0.1
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in proxies)
