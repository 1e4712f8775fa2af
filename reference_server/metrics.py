"""The server's metrics, served as Prometheus text at ``GET /metrics``.

Each server instance has its own registry, so several servers in one process (tests) keep
separate figures. Process memory comes from prometheus_client's process collector.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Tally:
    """A counter bumped on every frame: a plain addition, where prometheus_client's
    ``Counter.inc`` takes a lock (4% of the server's busy time under the throughput load,
    docs/performance.md). Exposed as a Prometheus counter by ``_Tallies``."""

    __slots__ = ("documentation", "name", "value")

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation, self.value = name, documentation, 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class _Tallies:
    """A collector exposing tallies as counters (``NAME_total``), read at each scrape."""

    def __init__(self, *tallies: Tally) -> None:
        self._tallies = tallies

    def collect(self) -> Iterator[Metric]:
        for tally in self._tallies:
            yield CounterMetricFamily(tally.name, tally.documentation, value=tally.value)


class Metrics:
    """Counters, gauges and histograms of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.connections = Gauge("ws_connections", "Open WebSocket connections", registry=r)
        self.sessions = Gauge("ws_sessions", "Sessions held, by state", ["state"], registry=r)
        self.connections_total = Counter(
            "ws_connections_opened", "WebSocket connections accepted", registry=r
        )
        self.handshake_rejections = Counter(
            "ws_handshake_rejections", "Handshakes refused, by reason", ["reason"], registry=r
        )
        self.sessions_opened = Counter("ws_sessions_opened", "New sessions", registry=r)
        self.resumes = Counter("ws_resumes", "Resume attempts, by outcome", ["outcome"], registry=r)
        self.replayed = Counter("ws_replayed_messages", "Messages replayed on resume", registry=r)
        self.expirations = Counter("ws_session_expirations", "Sessions expired", registry=r)
        self.token_reuse = Counter(
            "ws_token_reuse_detections", "Resume tokens presented twice", registry=r
        )
        self.takeovers = Counter("ws_session_takeovers", "Sessions taken over", registry=r)
        self.ip_changes = Counter(
            "ws_ip_changes", "Resumes from another address, by action", ["action"], registry=r
        )
        self.errors = Counter("ws_protocol_errors", "Errors sent, by code", ["code"], registry=r)
        self.heartbeat_timeouts = Counter(
            "ws_heartbeat_timeouts", "Connections closed for silence", registry=r
        )
        self.messages_in = Tally("ws_messages_received", "Frames received")
        self.messages_out = Tally("ws_messages_sent", "Frames sent")
        r.register(_Tallies(self.messages_in, self.messages_out))
        self.resume_latency = Histogram(
            "ws_resume_seconds",
            "Time to decide a resume and queue its replay",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.history_latency = Histogram(
            "ws_history_retrieval_seconds",
            "Time to read conversation history or agent context from the store",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
