"""One node of a cluster: the Redis store, the registry, the sweeper and the signals, built
for ``ReferenceServer`` and started and stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

from reference_server.store.redis import RedisStore

from .link import StoreLink
from .registry import ClusterRegistry
from .signals import Signals
from .sweeper import ClusterSweeper

log = logging.getLogger("reference_server")


def default_node_id() -> str:
    """``HOST-PID``: unique on one machine; give each node a stable id of its own instead
    (``--node-id``), so a restarted node takes over what its previous process left."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ClusterNode:
    """The parts that make a reference server a node of a cluster."""

    def __init__(
        self,
        *,
        url: str,
        node_id: str | None,
        registry_options: dict[str, Any],
        sweeper_options: dict[str, Any],
    ) -> None:
        self.node_id = node_id or default_node_id()
        self.redis = RedisStore(url)
        self.link = StoreLink(registry_options["metrics"].track_store())
        self.registry = ClusterRegistry(
            redis=self.redis, node_id=self.node_id, link=self.link, **registry_options
        )
        self.sweeper = ClusterSweeper(redis=self.redis, registry=self.registry, **sweeper_options)
        self.signals = Signals(redis=self.redis, registry=self.registry)
        self.registry.publish = self.signals.publish
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Load the scripts, take over this id's previous process, start writing and
        listening. Redis must answer (the node does not start without its store)."""
        async with asyncio.timeout(self.redis.timeout_s * 2):
            await self.redis.load_scripts()
            adopted = await self.sweeper.adopt(self.node_id)
            await self.sweeper.alive()
        self.link.succeeded()
        if adopted:
            log.info("detached %d sessions this node's previous process held", adopted)
        self._tasks = [
            asyncio.create_task(self.registry.writer.run(), name="store-writer"),
            asyncio.create_task(self.signals.run(), name="signals"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.signals.subscribed.wait(), self.redis.timeout_s)

    async def stop(self) -> None:
        """Let the writer store what the closed connections left (a bounded wait), stop
        writing and listening (what is still queued is reported failed), close Redis."""
        await self.registry.writer.drain(self.redis.timeout_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.redis.close(), 2.0)
