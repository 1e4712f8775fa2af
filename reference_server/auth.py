"""Credentials at the WebSocket handshake: signed bearer tokens (JWT, HS256), docs/protocol.md §15.

A token travels in the ``Authorization: Bearer`` header, or in the ``access_token`` query
parameter for clients that cannot set headers (browsers): accepted, and logged as the less
safe way, since query strings end up in logs and histories.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import jwt

ALGORITHM = "HS256"
ISSUER = "reference-server"


@dataclass(frozen=True, slots=True)
class Credential:
    """A verified credential: who, when it was issued, and how it arrived."""

    subject: str
    issued_at: float
    expires_at: float
    transport: Literal["header", "query"]


class AuthError(Exception):
    """A missing, malformed, badly signed or expired credential; the message says which."""


def mint(subject: str, secret: str, *, ttl_s: float = 3600.0, now: float | None = None) -> str:
    """Return a signed token for ``subject``, valid for ``ttl_s`` from ``now``."""
    issued = time.time() if now is None else now
    claims = {"sub": subject, "iat": int(issued), "exp": int(issued + ttl_s), "iss": ISSUER}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def extract(headers_authorization: str | None, path: str) -> tuple[str, Literal["header", "query"]]:
    """Find the raw token in the Authorization header, else the query string."""
    if headers_authorization:
        scheme, _, token = headers_authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization header must be 'Bearer <token>'")
        return token.strip(), "header"
    values = parse_qs(urlsplit(path).query).get("access_token")
    if values and values[0]:
        return values[0], "query"
    raise AuthError("no credential: send 'Authorization: Bearer <token>' or ?access_token=")


VERIFIED_KEPT = 4096
"""Tokens whose signature check is remembered (least recently used first out)."""


@functools.lru_cache(maxsize=VERIFIED_KEPT)
def _signed_claims(token: str, secret: str) -> tuple[str, float, float]:
    """(subject, issued at, expires at) of a token whose signature and claims check out.

    PyJWT takes about 60 µs a token, 9% of the server's busy time in a reconnect storm (the
    storm profile in docs/performance.md): every reconnect presents its token again. A token
    that verified once verifies again (the check depends on the token and the secret alone,
    both in the key); a failure raises and is never remembered. Times are not checked here."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["sub", "iat", "exp"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid credential: {exc}") from None
    return str(claims["sub"]), float(claims["iat"]), float(claims["exp"])


def verify(
    token: str, secret: str, *, now: float, transport: Literal["header", "query"] = "header"
) -> Credential:
    """Check the signature and the times against ``now`` (the server's clock)."""
    subject, issued_at, expires_at = _signed_claims(token, secret)
    # Times are checked here, on every call, against the server's clock, which may be virtual.
    if expires_at <= now:
        raise AuthError("credential expired")
    return Credential(
        subject=subject, issued_at=issued_at, expires_at=expires_at, transport=transport
    )
