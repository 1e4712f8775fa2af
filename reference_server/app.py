"""The reference server: the sans-I/O protocol over real WebSocket connections.

This module only wires the parts together and owns their lifetime; each part has one job:

- ``http_routes``: health, metrics, the admin handshake check, handshake authentication;
- ``connection``: one connection's loop (attach, read, single writer, flush);
- ``registry``: the sessions held, hello and resume, every change committed to the store;
- ``application``: agent turns, history pages, agent context (§11);
- ``sweeper``: heartbeats and expiry on a timer (§8.3, §9);
- ``admin``: the virtual clock's channel; ``faults``: planted faults, for harness tests only.

The rules live in ``reference_server.protocol``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from reference_server import admin
from reference_server.application import Application
from reference_server.clock import Clock, SystemClock, VirtualClock
from reference_server.cluster.node import ClusterNode
from reference_server.config import ServerConfig
from reference_server.connection import ConnectionLoop
from reference_server.faults import FaultPlan, fault_plan
from reference_server.http_routes import ADMIN_PATH, HttpRoutes, path_of
from reference_server.metrics import Metrics
from reference_server.protocol import SessionConfig
from reference_server.protocol.session import CAPABILITY_VIRTUAL_CLOCK
from reference_server.registry import SessionHost, SessionRegistry
from reference_server.store import Store, open_store
from reference_server.store.redis import is_redis_spec
from reference_server.sweeper import TOMBSTONE_TTL_S, Sweeper

log = logging.getLogger("reference_server")

__all__ = ["ADMIN_PATH", "TOMBSTONE_TTL_S", "ReferenceServer", "SessionHost"]


class ReferenceServer:
    """One reference server: ``async with ReferenceServer(config) as server: server.url``."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        self.faults = faults or fault_plan((config or ServerConfig()).planted_fault)
        self.config = self.faults.configure(config or ServerConfig())
        self.clock: Clock = clock or (
            VirtualClock(self.config.clock_offset_s) if self.config.virtual_clock else SystemClock()
        )
        self.metrics = Metrics()
        self.session_config = _session_config(self.config, self.clock)
        self._server: Server | None = None
        self._sweeper_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        registry_options: dict[str, Any] = {
            "session_config": self.session_config,
            "clock": self.clock,
            "metrics": self.metrics,
            "faults": self.faults,
            "spawn": self._spawn,
            "reauth_max_age_s": self.config.reauth_max_age_s,
            "max_sessions": self.config.max_sessions,
            "overload_retry_after_ms": self.config.overload_retry_after_ms,
        }
        sweeper_options: dict[str, Any] = {
            "clock": self.clock,
            "metrics": self.metrics,
            "faults": self.faults,
            "interval_s": self.config.sweep_interval_s,
        }
        # redis://: a node of a cluster (reference_server/cluster/), sessions loaded on demand.
        self.cluster: ClusterNode | None = None
        if store is None and is_redis_spec(self.config.store):
            self.cluster = ClusterNode(
                url=self.config.store,
                node_id=self.config.node_id,
                registry_options=registry_options,
                sweeper_options=sweeper_options,
            )
            self.registry: SessionRegistry = self.cluster.registry
            self.store: Store = self.registry.store
            self.sweeper: Sweeper = self.cluster.sweeper
        else:
            self.store = store or open_store(self.config.store)
            self.registry = SessionRegistry(store=self.store, **registry_options)
            self.sweeper = Sweeper(registry=self.registry, store=self.store, **sweeper_options)
        self.routes = HttpRoutes(
            config=self.config,
            clock=self.clock,
            metrics=self.metrics,
            open_connections=lambda: self.open_connections,
            before_metrics=self.sweeper.update_gauges,
            health=None if self.cluster is None else self.cluster.link.health,
        )
        self.connections = ConnectionLoop(
            config=self.config,
            session_config=self.session_config,
            registry=self.registry,
            application=Application(
                registry=self.registry,
                store=self.store,
                clock=self.clock,
                metrics=self.metrics,
                faults=self.faults,
            ),
            sweeper=self.sweeper,
            routes=self.routes,
            clock=self.clock,
            metrics=self.metrics,
            faults=self.faults,
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> ReferenceServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Load stored sessions (or join the cluster), listen, and start the sweeper."""
        if self.cluster is not None:
            await self.cluster.start()
        self.registry.load()
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self.routes.process_request,
            max_size=self.session_config.limits.max_frame_bytes,
            ping_interval=None,  # heartbeats are the protocol's own (§9)
            open_timeout=self.config.handshake_timeout_s,
            close_timeout=2,
            compression=None,
            # A reconnect storm arrives all at once; asyncio's default backlog of 100 drops
            # SYNs and costs the retransmit second (measured by bench/storm.py).
            backlog=4096,
        )
        self._sweeper_task = asyncio.create_task(self.sweeper.run())
        self.sweeper.update_gauges()
        log.info(
            "listening on %s (store %s, %s clock)",
            self.url,
            self.config.store,
            "virtual" if self.clock.virtual else "system",
        )

    async def stop(self) -> None:
        """Close every connection, stop the sweeper, close the store."""
        if self._sweeper_task is not None:
            self._sweeper_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper_task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.cluster is not None:
            await self.cluster.stop()
        self.store.close()

    @property
    def port(self) -> int:
        """The port the server listens on (useful with port 0)."""
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        return f"ws://{self.config.host}:{self.port}{self.config.path}"

    @property
    def hosts(self) -> dict[str, SessionHost]:
        """Every session held, by id."""
        return self.registry.hosts

    @property
    def open_connections(self) -> int:
        """Open WebSocket connections (a counter, not a scan: O(1) per handshake)."""
        return self.connections.open_connections

    def sweep(self) -> None:
        """Run heartbeats and expiry for every session once, at the clock's current time."""
        self.sweeper.sweep()

    async def sweep_all(self) -> None:
        """``sweep()``, and on a node of a cluster the sessions in Redis too (expiry)."""
        self.sweeper.sweep()
        if self.cluster is not None:
            try:  # Redis may be away: the sweeper's next round expires what this one could not
                await self.cluster.sweeper.shared_sweep(self.cluster.redis.timeout_s)
            except Exception as exc:
                log.warning("shared sweep failed: %s", exc or type(exc).__name__)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        if path_of(ws.request) == ADMIN_PATH:
            assert isinstance(self.clock, VirtualClock)  # http_routes lets no one in otherwise
            await admin.serve(ws, self.clock, self.sweep_all)
            return
        await self.connections.handle(ws)


def _session_config(config: ServerConfig, clock: Clock) -> SessionConfig:
    """What sessions advertise: the configured terms, ``virtual_clock`` on a virtual clock."""
    capabilities = config.session.capabilities
    if clock.virtual and CAPABILITY_VIRTUAL_CLOCK not in capabilities:
        capabilities = (*capabilities, CAPABILITY_VIRTUAL_CLOCK)
    # The rate limit and the freshness rule are the I/O layer's to enforce: what is advertised
    # is what ServerConfig says, whatever config.session says.
    return dataclasses.replace(
        config.session,
        capabilities=capabilities,
        frames_per_s=config.max_frames_per_s,
        frame_burst=config.frame_burst,
        reauth_max_age_s=config.reauth_max_age_s,
    )
