"""Whether a node's link to Redis works, as an operator sees it (docs/cluster.md, Health
checks).

Every part of a node that talks to Redis reports here how each of its operations ended: the
writer's batches (``commit``), the reads of a resume (``load``), the signals to other nodes
(``publish``), the subscription that hears them (``subscribe``) and the shared sweep
(``sweep``). The link is *up* while the last of them succeeded and *down* from a failure to
the next success; the pub/sub subscription is followed apart, since a node that cannot hear
takeovers keeps serving (the version check makes up for what it misses) but should be looked
at. Both show in ``/metrics`` (``ws_store_up``, ``ws_store_subscribed``, ``ws_store_errors``)
and in ``GET /healthz``. Time here is the machine's monotonic clock, never the server's
(possibly virtual) protocol clock: an outage is real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from reference_server.metrics import STORE_OPERATIONS, StoreMetrics

STORE_ERRORS = (RedisError, OSError, TimeoutError)
"""What a store operation raises when Redis failed or did not answer in time."""

T = TypeVar("T")


class StoreLink:
    """The state of one node's link to Redis, kept in its metrics."""

    def __init__(self, metrics: StoreMetrics, *, now: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._now = now
        self.down_since: float | None = now()
        """When the link went down (monotonic seconds); None while it is up. A node starts
        down: nothing has worked yet (it serves only once its first operations have)."""
        self.subscribed = False
        metrics.up.set(0)
        metrics.subscribed.set(0)

    @property
    def up(self) -> bool:
        """Whether the last store operation succeeded."""
        return self.down_since is None

    def succeeded(self) -> None:
        """A store operation worked: the link is up."""
        if self.down_since is not None:
            self.down_since = None
            self._metrics.up.set(1)

    def failed(self, operation: str) -> None:
        """A store operation failed or was not answered in time: the link is down (from the
        first failure on, until something works again)."""
        assert operation in STORE_OPERATIONS, operation
        self._metrics.errors.labels(operation).inc()
        if self.down_since is None:
            self.down_since = self._now()
            self._metrics.up.set(0)

    async def timed(self, operation: str, work: Awaitable[T], timeout_s: float | None) -> T:
        """``work`` (one store operation) within ``timeout_s``, its outcome reported."""
        try:
            async with asyncio.timeout(timeout_s):
                result = await work
        except STORE_ERRORS:
            self.failed(operation)
            raise
        self.succeeded()
        return result

    def subscription(self, live: bool) -> None:
        """The pub/sub subscription was made (``live``) or lost."""
        self.subscribed = live
        self._metrics.subscribed.set(1 if live else 0)

    def health(self) -> str:
        """The lines ``GET /healthz`` adds after ``ok``: ``store: up`` or ``store: down since
        S s`` (S seconds ago), then ``subscription: up`` or ``down``."""
        if self.down_since is None:
            store = "up"
        else:
            store = f"down since {self._now() - self.down_since:.1f} s"
        return f"store: {store}\nsubscription: {'up' if self.subscribed else 'down'}\n"
