"""Canonical client addresses (docs/protocol.md §10), with no event loop."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_server.config import ServerConfig
from reference_server.protocol.addresses import canonical, same_address


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("::FFFF:cb00:7107", "203.0.113.7"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        (" 2001:db8::1 ", "2001:db8::1"),
        ("garbage", "garbage"),
    ],
)
def test_canonical_form(written: str, expected: str) -> None:
    """IPv4-mapped IPv6 is IPv4; IPv6 is lower case with the longest zero run compressed."""
    assert expected == canonical(written)


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_and_its_mapped_form_are_the_same(address: ipaddress.IPv4Address) -> None:
    """Every IPv4 address equals its IPv4-mapped IPv6 form, in either case, exploded or not."""
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    assert same_address(str(address), mapped.exploded.upper())
    assert str(address) == canonical(str(mapped))


@given(st.ip_addresses(v=6))
def test_an_ipv6_address_is_the_same_however_it_is_written(
    address: ipaddress.IPv6Address,
) -> None:
    """Exploded, upper-case and compressed forms of an IPv6 address compare equal."""
    assert same_address(address.exploded.upper(), address.compressed)


def test_a_trusted_proxy_is_recognised_in_its_mapped_form() -> None:
    """A dual-stack socket reports ::ffff:127.0.0.1; it is still the trusted 127.0.0.1."""
    config = ServerConfig(trusted_proxies=("127.0.0.1/32",))
    assert (True, False) == (config.trusts("::ffff:127.0.0.1"), config.trusts("127.0.0.2"))
