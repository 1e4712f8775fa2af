"""What the server answers at the HTTP level, before any WebSocket exists.

``GET /healthz`` and ``GET /metrics`` are answered here (``/healthz`` is ``ok`` on a single
server; a node of a cluster adds how its link to Redis is, and still answers 200:
docs/cluster.md, Health checks); the admin path is checked for its token; on the protocol's
path the handshake is refused for overload (503) or a bad credential (401, §15), and a good
credential is kept for the connection that follows.
"""

from __future__ import annotations

import logging
import math
import secrets
import weakref
from collections.abc import Callable
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from reference_server.auth import AuthError, Credential, extract, verify
from reference_server.clock import Clock
from reference_server.config import ServerConfig
from reference_server.metrics import Metrics
from reference_server.wire import peer

log = logging.getLogger("reference_server")

ADMIN_PATH = "/admin"


def path_of(request: Request) -> str:
    """The request's path without its query string."""
    return request.path.split("?", 1)[0]


class HttpRoutes:
    """The server's ``process_request`` hook, and the credentials it accepted."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        clock: Clock,
        metrics: Metrics,
        open_connections: Callable[[], int],
        before_metrics: Callable[[], None],
        health: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self._open_connections = open_connections
        self._before_metrics = before_metrics
        self._health = health
        """Lines ``/healthz`` adds after ``ok`` (a node's store link), if any."""
        self._credentials: weakref.WeakKeyDictionary[ServerConnection, Credential] = (
            weakref.WeakKeyDictionary()
        )

    def credential(self, connection: ServerConnection) -> Credential:
        """The credential the handshake of ``connection`` presented (it passed ``verify``)."""
        return self._credentials[connection]

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer HTTP requests, refuse bad handshakes; None lets the WebSocket handshake on."""
        path = path_of(request)
        if path == "/healthz":
            extra = "" if self._health is None else self._health()
            return connection.respond(HTTPStatus.OK, "ok\n" + extra)
        if path == "/metrics":
            self._before_metrics()
            response = connection.respond(HTTPStatus.OK, self.metrics.render().decode())
            response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
            return response
        if path == ADMIN_PATH:
            return self._check_admin(connection, request)
        if path != self.config.path:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no such path: {path}\n")
        if self._open_connections() >= self.config.max_connections:
            self.metrics.handshake_rejections.labels("overloaded").inc()
            response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "overloaded\n")
            # Retry-After is in whole seconds (RFC 9110 §10.2.3): rounded up, never below 1.
            seconds = max(1, math.ceil(self.config.overload_retry_after_ms / 1000))
            response.headers["Retry-After"] = str(seconds)
            return response
        try:
            raw, transport = extract(request.headers.get("Authorization"), request.path)
            credential = verify(
                raw, self.config.auth_secret, now=self.clock.now(), transport=transport
            )
        except AuthError as exc:
            self.metrics.handshake_rejections.labels("auth_failed").inc()
            log.info("handshake refused from %s: %s", peer(connection), exc)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, f"{exc}\n")
            response.headers["WWW-Authenticate"] = 'Bearer realm="reference-server"'
            return response
        if transport == "query":
            log.warning(
                "credential for %s sent in the query string (less safe)", credential.subject
            )
        self._credentials[connection] = credential
        return None

    def _check_admin(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self.clock.virtual or not self.config.admin_token:
            return connection.respond(HTTPStatus.NOT_FOUND, "no admin channel on this server\n")
        expected = f"Bearer {self.config.admin_token}"
        if not secrets.compare_digest(request.headers.get("Authorization", ""), expected):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "admin token required\n")
        return None
