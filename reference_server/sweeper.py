"""The sweeper: time passing for every session, on a timer (§8.3, §9).

Each sweep ticks every session at the clock's current time: attached ones get their pings and
their heartbeat deadline, detached ones their windows. A heartbeat timeout detaches the session
and closes its connection with 4007; a passed window expires and deletes the session. The admin
channel sweeps at once after it moves a virtual clock.
"""

from __future__ import annotations

import asyncio
import logging

from reference_server.clock import Clock
from reference_server.faults import FaultPlan
from reference_server.metrics import Metrics
from reference_server.protocol import CloseCode, HeartbeatTimedOut, SessionExpired
from reference_server.registry import SessionRegistry
from reference_server.store import Store

log = logging.getLogger("reference_server")

TOMBSTONE_TTL_S = 3600.0


class Sweeper:
    """Heartbeats and expiry for every session of one registry."""

    def __init__(
        self,
        *,
        registry: SessionRegistry,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        faults: FaultPlan,
        interval_s: float,
    ) -> None:
        self.registry = registry
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.faults = faults
        self.interval_s = interval_s

    async def run(self) -> None:
        """Sweep every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.sweep()
            except Exception:  # a sweep must never kill the sweeper
                log.exception("sweep failed")

    def sweep(self) -> None:
        """Run heartbeats and expiry for every session once, at the clock's current time."""
        now = self.clock.now()
        registry = self.registry
        for host in list(registry.hosts.values()):
            session = host.session
            self.faults.before_tick(session, now)
            for event in session.tick(now):
                if isinstance(event, HeartbeatTimedOut):
                    self.metrics.heartbeat_timeouts.inc()
                    ws, host.ws = host.ws, None
                    session.connection_lost(now)
                    registry.commit(host)
                    if ws is not None:
                        registry.spawn(ws.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout"))
                elif isinstance(event, SessionExpired):
                    self.metrics.expirations.inc()
                    registry.forget(host, "expired", now)
            if host.ws is not None and session.has_data_to_send:
                host.wake.set()
        self.store.sweep_tombstones(now - TOMBSTONE_TTL_S)
        self.update_gauges()

    def update_gauges(self) -> None:
        """Publish how many sessions are in each state."""
        for state, count in self.registry.count_by_state().items():
            self.metrics.sessions.labels(state.value).set(count)
