"""The sweeper: time passing for every session (§8.3, §9).

``tick(host, now)`` is one session's time: attached, its pings and its heartbeat deadline;
detached, its windows. A heartbeat timeout detaches the session and closes its connection with
4007; a passed window expires and deletes the session. Each attached connection calls it on
its own timer, at the moments the session asks for (so a deadline is met on time); the sweep
calls it for every session on a slower timer (so detached sessions expire), and the admin
channel sweeps at once after it moves a virtual clock.
"""

from __future__ import annotations

import asyncio
import logging

from reference_server.clock import Clock
from reference_server.faults import FaultPlan
from reference_server.metrics import Metrics
from reference_server.protocol import CloseCode, HeartbeatTimedOut, SessionExpired
from reference_server.registry import SessionHost, SessionRegistry
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
        for host in list(self.registry.hosts.values()):
            self.tick(host, now)
        self.store.sweep_tombstones(now - TOMBSTONE_TTL_S)
        self.update_gauges()

    def tick(self, host: SessionHost, now: float) -> None:
        """Let time pass for one session: send its ping, close it at its heartbeat deadline
        with 4007 (§9), expire it past its resumable window (§8.3)."""
        registry = self.registry
        session = host.session
        self.faults.before_tick(session, now)
        for event in session.tick(now):
            if isinstance(event, HeartbeatTimedOut):
                self.metrics.heartbeat_timeouts.inc()
                ws, host.ws = host.ws, None
                session.connection_lost(now)
                registry.commit(host)
                if ws is not None:
                    registry.spawn(ws.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat_timeout"))
            elif isinstance(event, SessionExpired):
                self.metrics.expirations.inc()
                registry.forget(host, "expired", now)
        if host.ws is not None and session.has_data_to_send:
            host.wake.set()

    def update_gauges(self) -> None:
        """Publish how many sessions are in each state."""
        for state, count in self.registry.count_by_state().items():
            self.metrics.sessions.labels(state.value).set(count)
