"""The client address of a connection: the socket peer, or what a trusted proxy says (§10.1).

A trusted proxy reports the hops it saw in ``X-Forwarded-For`` (the de facto header) or, if the
server is configured so, in RFC 7239 ``Forwarded``; never both. Header lines are joined in
order (RFC 9110 §5.3), elements are split on commas, and each element is one node: an IPv4
address, an IPv6 address (bare or in brackets), either with a port; for ``Forwarded``, the
``for=`` parameter's value. Anything else (``unknown``, an obfuscated ``_name``, garbage) is
not an address. The walk goes from the right, skipping trusted proxies; the first untrusted
node is the client, unless it is not an address: then the last trusted node walked (at first,
the socket peer) is the best the server knows. Every address comes out in canonical form.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from websockets.datastructures import Headers

from reference_server.config import ServerConfig
from reference_server.protocol.addresses import canonical

_BRACKETED = re.compile(r"^\[(?P<address>[^\]]+)\](?::\d{1,5})?$")
_IPV4_WITH_PORT = re.compile(r"^(?P<address>\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$")
_FOR = re.compile(r'^\s*for\s*=\s*(?P<value>"(?:[^"\\]|\\.)*"|[^;,\s]*)\s*$', re.IGNORECASE)


def client_ip(peer: str, headers: Headers, config: ServerConfig) -> str:
    """The client address of a connection from ``peer`` with these handshake headers."""
    peer = canonical(peer)
    if not config.trusts(peer):
        return peer  # §10.1: forwarding headers from anyone else are ignored
    if config.forwarded_header == "forwarded":
        hops = forwarded_nodes(headers.get_all("Forwarded"))
    else:
        hops = x_forwarded_for_nodes(headers.get_all("X-Forwarded-For"))
    return walk(peer, hops, config)


def walk(peer: str, hops: Sequence[str | None], config: ServerConfig) -> str:
    """From the right: skip trusted proxies; the first other node is the client, or, if it is
    not an address (None), the last trusted node walked."""
    nearest = peer
    for hop in reversed(hops):
        if hop is None:
            return nearest
        if not config.trusts(hop):
            return hop
        nearest = hop
    return nearest  # every hop is a trusted proxy: the leftmost


def x_forwarded_for_nodes(lines: Sequence[str]) -> list[str | None]:
    """The nodes of ``X-Forwarded-For`` lines, left to right; None where not an address."""
    return [node(element) for element in _elements(lines)]


def forwarded_nodes(lines: Sequence[str]) -> list[str | None]:
    """The ``for=`` nodes of RFC 7239 ``Forwarded`` lines; None where absent or no address."""
    nodes: list[str | None] = []
    for element in _elements(lines):
        found: str | None = None
        for pair in element.split(";"):
            match = _FOR.match(pair)
            if match:
                value = match.group("value")
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                found = node(value)
        nodes.append(found)
    return nodes


def node(text: str) -> str | None:
    """One node as an address in canonical form, or None: ``203.0.113.7``, ``203.0.113.7:80``,
    ``2001:db8::1``, ``[2001:db8::1]``, ``[2001:db8::1]:443``."""
    text = text.strip()
    bracketed = _BRACKETED.match(text)
    if bracketed:
        text = bracketed.group("address")
    else:
        with_port = _IPV4_WITH_PORT.match(text)
        if with_port:
            text = with_port.group("address")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None
    return canonical(text)


def _elements(lines: Sequence[str]) -> list[str]:
    # Quoted commas (a Forwarded quoted-string) never hold an address: a plain split will do.
    return [part.strip() for line in lines for part in line.split(",") if part.strip()]
