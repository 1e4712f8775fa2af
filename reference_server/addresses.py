"""The client address of a connection: the socket peer, or what a trusted proxy says (§10)."""

from __future__ import annotations

from websockets.datastructures import Headers

from reference_server.config import ServerConfig
from reference_server.protocol.addresses import canonical


def client_ip(peer: str, headers: Headers, config: ServerConfig) -> str:
    """The socket peer, or X-Forwarded-For's nearest untrusted hop from a trusted proxy, in
    canonical form (§10)."""
    return canonical(_client_ip(peer, headers, config))


def _client_ip(peer: str, headers: Headers, config: ServerConfig) -> str:
    forwarded = headers.get("X-Forwarded-For")
    if not forwarded or not config.trusts(peer):
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not config.trusts(hop):
            return hop
    return hops[0] if hops else peer
