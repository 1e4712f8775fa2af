"""``auth.verify`` remembers good signatures, never a failure, and checks times every call."""

from __future__ import annotations

import pytest

from reference_server import auth

SECRET = "unit-secret-0123456789abcdef0123456789"


def test_a_remembered_token_still_expires_against_the_clock() -> None:
    """The same token verifies at a time before its expiry and fails at one after it."""
    token = auth.mint("alice", SECRET, ttl_s=60, now=1000.0)
    assert "alice" == auth.verify(token, SECRET, now=1010.0).subject
    with pytest.raises(auth.AuthError, match="expired"):
        auth.verify(token, SECRET, now=1061.0)


def test_a_token_good_under_one_secret_fails_under_another() -> None:
    """The secret is part of what is remembered: another secret does not pass the token."""
    token = auth.mint("bob", SECRET, now=1000.0)
    auth.verify(token, SECRET, now=1001.0)
    with pytest.raises(auth.AuthError, match="invalid credential"):
        auth.verify(token, SECRET + "x", now=1001.0)


def test_a_failure_is_not_remembered() -> None:
    """A tampered token fails every time, including after the real one verified."""
    token = auth.mint("carol", SECRET, now=1000.0)
    head, payload, signature = token.split(".")
    first = "B" if signature[0] == "A" else "A"  # the first character: all 6 bits count
    tampered = f"{head}.{payload}.{first}{signature[1:]}"
    for _ in range(2):
        with pytest.raises(auth.AuthError):
            auth.verify(tampered, SECRET, now=1001.0)
    assert "carol" == auth.verify(token, SECRET, now=1001.0).subject


def test_the_transport_is_the_callers_not_the_remembered_one() -> None:
    """The same token through the header then the query reports each transport."""
    token = auth.mint("dan", SECRET, now=1000.0)
    assert "header" == auth.verify(token, SECRET, now=1001.0, transport="header").transport
    assert "query" == auth.verify(token, SECRET, now=1001.0, transport="query").transport
