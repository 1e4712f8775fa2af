"""Client addresses in canonical form, so that one address is never two (docs/protocol.md §10).

An IPv4 address is written in dotted decimal; an IPv6 address as RFC 5952 §4 says (lower case,
the longest run of zero groups compressed); an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``,
RFC 4291 §2.5.5.2) is the IPv4 address it maps. Text that is not an IP address is returned as
it is: the comparison stays exact, and no guess is made.
"""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)  # ipaddress parses slowly; a server sees few addresses
def canonical(address: str) -> str:
    """The canonical form of an IP address, or ``address`` itself if it is not one."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def same_address(a: str, b: str) -> bool:
    """Are ``a`` and ``b`` the same address, however each is written?"""
    return canonical(a) == canonical(b)
