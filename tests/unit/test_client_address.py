"""The client address behind trusted proxies (docs/protocol.md §10.1), with no event loop."""

from __future__ import annotations

import pytest
from websockets.datastructures import Headers

from reference_server.addresses import client_ip, forwarded_nodes, node, x_forwarded_for_nodes
from reference_server.config import ServerConfig

TRUSTING = ServerConfig(trusted_proxies=("127.0.0.1/32", "10.0.0.0/8"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:8080", "203.0.113.7"),
        ("2001:DB8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("garbage", None),
        ("unknown", None),
        ("_hidden", None),
        ("203.0.113.999", None),
        ("", None),
    ],
)
def test_a_node_is_an_address_with_or_without_a_port_or_nothing(
    text: str, expected: str | None
) -> None:
    """IPv4 with a port, IPv6 bare or bracketed with a port; anything else is no address."""
    assert expected == node(text)


def test_x_forwarded_for_lines_are_joined_and_empty_elements_skipped() -> None:
    """Repeated header lines are one list, in order; empty elements do not count."""
    assert ["198.51.100.1", None, "10.0.0.2"] == x_forwarded_for_nodes(
        ["198.51.100.1, ", "junk,,10.0.0.2"]
    )


def test_forwarded_takes_the_for_parameter_quoted_or_not() -> None:
    """RFC 7239: for= in any case, quoted IPv6 with a port, elements without for= are None."""
    lines = ['for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711"', "by=x"]
    assert ["192.0.2.60", "2001:db8:cafe::17", None] == forwarded_nodes(lines)


def _ip(peer: str, config: ServerConfig = TRUSTING, **headers: str | list[str]) -> str:
    pairs = Headers()
    for name, value in headers.items():
        for line in [value] if isinstance(value, str) else value:
            pairs[name.replace("_", "-")] = line
    return client_ip(peer, pairs, config)


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("198.51.100.5", "203.0.113.9", "198.51.100.5"),  # untrusted peer: header ignored
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "203.0.113.9, 10.1.2.3", "203.0.113.9"),  # trusted hops skipped
        ("127.0.0.1", "192.0.2.1, 203.0.113.9, 10.1.2.3", "203.0.113.9"),  # spoofable left
        ("127.0.0.1", "10.9.9.9, 10.1.2.3", "10.9.9.9"),  # all trusted: the leftmost
        ("127.0.0.1", "garbage", "127.0.0.1"),  # no address: the nearest trusted node
        ("127.0.0.1", "203.0.113.9, garbage, 10.1.2.3", "10.1.2.3"),
        ("127.0.0.1", "[2001:DB8::9]:443", "2001:db8::9"),
        ("127.0.0.1", " , ", "127.0.0.1"),
        ("::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9"),  # a mapped trusted peer
    ],
)
def test_the_walk_from_the_right(peer: str, header: str, expected: str) -> None:
    """§10.1: skip trusted proxies from the right; the first other node, if an address."""
    assert expected == _ip(peer, X_Forwarded_For=header)


def test_repeated_header_lines_are_one_list() -> None:
    """Two X-Forwarded-For lines read as one, left to right."""
    assert "203.0.113.9" == _ip("127.0.0.1", X_Forwarded_For=["192.0.2.1", "203.0.113.9"])


def test_forwarded_is_read_only_when_configured() -> None:
    """The server reads exactly one header: Forwarded when so configured, else XFF."""
    config = ServerConfig(trusted_proxies=("127.0.0.1/32",), forwarded_header="forwarded")
    headers = {"Forwarded": "for=203.0.113.9", "X_Forwarded_For": "192.0.2.1"}
    assert "203.0.113.9" == _ip("127.0.0.1", config, **headers)
    assert "192.0.2.1" == _ip(
        "127.0.0.1", ServerConfig(trusted_proxies=("127.0.0.1/32",)), **headers
    )
