"""Resume tokens: opaque, random, stored only as a hash (docs/protocol.md §7.2.1)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

TokenFactory = Callable[[], str]


def new_token() -> str:
    """Return a fresh token: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Return the form a token is stored in: SHA-256, hex. Tokens are never stored in clear."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_hash(a: str | None, b: str) -> bool:
    """Compare two token hashes in constant time."""
    return a is not None and hmac.compare_digest(a, b)
