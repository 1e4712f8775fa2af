"""Credentials at the WebSocket handshake: signed bearer tokens (JWT, HS256), docs/protocol.md §15.

A token travels in the ``Authorization: Bearer`` header, or in the ``access_token`` query
parameter for clients that cannot set headers (browsers): accepted, and logged as the less
safe way, since query strings end up in logs and histories.
"""

from __future__ import annotations

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


def verify(
    token: str, secret: str, *, now: float, transport: Literal["header", "query"] = "header"
) -> Credential:
    """Check the signature and the times against ``now`` (the server's clock)."""
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
    # Times are checked here against the server's clock, which may be virtual.
    if float(claims["exp"]) <= now:
        raise AuthError("credential expired")
    return Credential(
        subject=str(claims["sub"]),
        issued_at=float(claims["iat"]),
        expires_at=float(claims["exp"]),
        transport=transport,
    )
