"""Time passing for a cluster: each node ticks its own connections, and the sessions in Redis
are expired once, by whichever node's sweep gets there first (§8.3).

Expiry runs from the ``P:expiry`` index (session id -> end of its resumable window): a due
entry is decided by one script inside the session's slot, which deletes the session only if
it is still detached past its window, so when two nodes sweep at the same moment exactly one
of them expires it (and counts it). A node also says it is alive (``P:nodes``) on every
sweep; the first node to see another one silent for ``NODE_TTL_S`` claims it and detaches the
sessions still attached to it as of that moment, so they expire as any detached session
would. A node that starts does that for its own id first: a process that starts with an id is
the previous one's successor, and the previous one's connections are gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from reference_server.protocol import SessionState
from reference_server.store.redis import RedisStore, text
from reference_server.sweeper import TOMBSTONE_TTL_S, Sweeper

from .registry import ClusterRegistry, raise_if_cancelled

log = logging.getLogger("reference_server")

NODE_TTL_S = 5.0
"""Seconds of real time without a sweep after which a node is taken for dead."""
EXPIRY_BATCH = 256


class ClusterSweeper(Sweeper):
    """Ticks this node's attached sessions; sweeps Redis for the whole cluster."""

    registry: ClusterRegistry

    def __init__(self, *, redis: RedisStore, registry: ClusterRegistry, **kwargs: Any) -> None:
        super().__init__(registry=registry, store=registry.store, **kwargs)
        self.redis = redis
        self.expired = 0
        """Sessions this node expired (each one is expired by one node only)."""
        self.adopted = 0
        """Sessions of dead nodes this node detached."""

    async def run(self) -> None:
        """Sweep every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.sweep()
                await self.shared_sweep()
            except Exception:  # a sweep must never kill the sweeper; Redis may be away
                log.warning("sweep failed", exc_info=True)
            raise_if_cancelled()

    def sweep(self) -> None:
        """This node's part: heartbeats of its attached sessions; forget detached ones (their
        windows run in Redis)."""
        now = self.clock.now()
        hosts = self.registry.hosts
        for sid, host in list(hosts.items()):
            if host.session.state is SessionState.ATTACHED:
                self.tick(host, now)
            elif hosts.get(sid) is host:
                del hosts[sid]
        self.update_gauges()

    async def shared_sweep(self, timeout: float | None = None) -> None:
        """``sweep_shared`` within ``timeout`` (the client's own bound when None), its outcome
        reported to the store link."""
        await self.registry.link.timed("sweep", self.sweep_shared(), timeout)

    async def sweep_shared(self) -> None:
        """The cluster's part: liveness, dead nodes, expiry, old tombstones."""
        await self.alive()
        await self._dead_nodes()
        await self.expire_due()
        await self.redis.sweep_tombstones(self.clock.now() - TOMBSTONE_TTL_S)

    async def alive(self) -> None:
        """Say this node is alive."""
        await self.redis.client.zadd(self.redis.nodes_key, {self.registry.node_id: time.time()})

    async def _dead_nodes(self) -> None:
        redis = self.redis
        silent = await redis.client.zrangebyscore(
            redis.nodes_key, "-inf", f"({time.time() - NODE_TTL_S!r}"
        )
        for raw in silent:
            node = text(raw)
            if node != self.registry.node_id and await redis.client.zrem(redis.nodes_key, node):
                log.warning("node %s is silent: detaching its sessions", node)
                await self.adopt(node)

    async def adopt(self, node: str) -> int:
        """Detach, as of now, every session still attached to ``node``; return how many."""
        redis = self.redis
        key = redis.node_sessions_key(node)
        now = self.clock.now()
        count = 0
        for raw in await redis.client.smembers(key):
            sid = text(raw)
            if await redis.adopt_orphan(sid, node, now) is not None:
                await redis.client.zadd(
                    redis.expiry_key, {sid: now + self.registry.session_config.windows.resumable_s}
                )
                count += 1
            await redis.client.srem(key, sid)
        self.adopted += count
        return count

    async def expire_due(self) -> int:
        """Expire the sessions whose window has passed; return how many this node expired."""
        redis = self.redis
        now = self.clock.now()
        resumable_s = self.registry.session_config.windows.resumable_s
        due = await redis.client.zrangebyscore(
            redis.expiry_key, "-inf", repr(now), start=0, num=EXPIRY_BATCH
        )
        count = 0
        for raw in due:
            sid = text(raw)
            left = await redis.expire(sid, now, resumable_s)
            if left is None:
                count += 1
                self.metrics.expirations.inc()
                log.info("session %s expired", sid)
            elif left != left:  # nan: gone
                await redis.client.zrem(redis.expiry_key, sid)
            else:  # attached (inf): look again a window from now; detached: when it is due
                score = now + resumable_s if left == float("inf") else left
                await redis.client.zadd(redis.expiry_key, {sid: score})
        self.expired += count
        return count
