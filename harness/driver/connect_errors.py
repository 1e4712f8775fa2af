"""What went wrong opening a WebSocket, in the user's words, for every driver over websockets.

A refused TCP connection, a TLS failure (with the name that was checked), an HTTP answer to
the handshake (401 with the server's reason, 404 for a wrong path), no HTTP answer at all:
each says what happened and at which URL, instead of the library's exception text.
"""

from __future__ import annotations

import ssl
from http import HTTPStatus
from urllib.parse import urlsplit

from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI


def describe(exc: BaseException, url: str, *, status: int | None = None, body: str = "") -> str:
    """One sentence for a failed WebSocket open of ``url`` (``status``/``body``: an HTTP
    refusal the caller already unpacked)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    where = f"{host}:{parts.port or (443 if parts.scheme == 'wss' else 80)}"
    if status is None and isinstance(exc, InvalidStatus):
        status, body = exc.response.status_code, exc.response.body.decode(errors="replace")
    if status is not None:
        return _http(status, body, url)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the certificate of {url} was not accepted for the name {host!r}: "
            f"{exc.verify_message or exc.reason}"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS: the handshake with {url} failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused at {where} ({url}): is the server running and listening there?"
    if isinstance(exc, TimeoutError):
        return f"no answer from {url} in time (opening the connection or the WebSocket handshake)"
    if isinstance(exc, InvalidMessage):
        return (
            f"no HTTP answer to the WebSocket handshake from {url}: the connection was closed "
            "before one came (the server is down, refused the connection behind a proxy, or "
            "the network cut it)"
        )
    if isinstance(exc, InvalidURI):
        return f"{url} is not a WebSocket URL: {exc}"
    if isinstance(exc, InvalidHandshake):
        return f"the WebSocket handshake with {url} failed: {exc}"
    if isinstance(exc, OSError):
        return f"could not connect to {where} ({url}): {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _http(status: int, body: str, url: str) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "HTTP error"
    reason = body.strip()[:200]
    said = f": {reason}" if reason else ""
    if status in (401, 403):
        hint = " (the credential was refused)"
    elif status == 404:
        hint = " (is the path right?)"
    elif status in (429, 503):
        hint = " (the server is busy; it may say when to retry)"
    else:
        hint = ""
    return f"{url} answered the WebSocket handshake with HTTP {status} ({phrase}){hint}{said}"
