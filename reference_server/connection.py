"""One protocol connection, from its first frame to its close.

``handle()`` reads the first frame (hello or resume, §7.1, §7.2) and has the registry attach a
session; then one loop reads frames, polices them (flood control, bad input, §12) and feeds
them to the session's state machine, while a single writer task sends whatever the session
queued, in order. Errors go through the same writer lock, so nothing interleaves with a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import cast

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame

from reference_server import addresses, wire
from reference_server.application import Application
from reference_server.batched_send import send_texts
from reference_server.clock import Clock
from reference_server.config import ServerConfig
from reference_server.faults import FaultPlan
from reference_server.http_routes import HttpRoutes
from reference_server.metrics import Metrics
from reference_server.protocol import (
    CloseCode,
    ErrorCode,
    RemoteProtocolError,
    SessionConfig,
    codec,
)
from reference_server.protocol.messages import (
    Ack,
    Bye,
    ClientMessage,
    GetAgentContext,
    GetConversationHistory,
    Hello,
    Pong,
    Resume,
)
from reference_server.registry import SessionHost, SessionRegistry
from reference_server.sweeper import Sweeper

log = logging.getLogger("reference_server")

# Past a due time by this much, so a timer never wakes a hair early and spins.
_TIMER_SLACK_S = 0.001
# Frame kinds are told apart by exact type: a decoded message is exactly its tagged class, and
# an isinstance() against a msgspec Struct class that does not match costs about 1,400
# instructions (valgrind, 2026-12-02), a set lookup of the type a few dozen.
# §12.1: the frames the rate limit does not count.
_FREE_FRAMES = frozenset({Ack, Pong})
# Requests whose answers are read from the store (§11.2, §11.3).
_READS_STORE = frozenset({GetConversationHistory, GetAgentContext})
# Errors after which the connection cannot go on (§12): the stream is broken, not one frame.
_FATAL_ERRORS = frozenset(
    {ErrorCode.SEQUENCE_GAP, ErrorCode.UNEXPECTED_MESSAGE, ErrorCode.FRAME_TOO_LARGE}
)


class ConnectionLoop:
    """Serves every protocol connection of one server."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        session_config: SessionConfig,
        registry: SessionRegistry,
        application: Application,
        sweeper: Sweeper,
        routes: HttpRoutes,
        clock: Clock,
        metrics: Metrics,
        faults: FaultPlan,
    ) -> None:
        self.config = config
        self.session_config = session_config
        self.registry = registry
        self.application = application
        self.sweeper = sweeper
        self.routes = routes
        self.clock = clock
        self.metrics = metrics
        self.faults = faults
        self.open_connections = 0
        """Open protocol connections (a counter, not a scan: O(1) per handshake)."""

    async def handle(self, ws: ServerConnection) -> None:
        """Run one connection to its end."""
        self.metrics.connections.inc()
        self.metrics.connections_total.inc()
        self.open_connections += 1
        try:
            host = await self._attach(ws)
            if host is not None:
                await self._serve(host, ws)
        except ConnectionClosed:
            pass
        finally:
            self.metrics.connections.dec()
            self.open_connections -= 1

    async def _attach(self, ws: ServerConnection) -> SessionHost | None:
        """Read the first frame (hello or resume) and attach a session to this connection."""
        credential = self.routes.credential(ws)
        try:
            # A timeout scope, not wait_for: wait_for runs the recv in a task of its own, an
            # extra task and loop turn on every connection's first frame (bench resume).
            async with asyncio.timeout(self.config.handshake_timeout_s):
                first = await ws.recv()
        except TimeoutError:
            await wire.fail(
                ws,
                self.metrics,
                ErrorCode.UNEXPECTED_MESSAGE,
                "no hello or resume",
                CloseCode.PROTOCOL_ERROR,
            )
            return None
        if isinstance(first, bytes):
            await wire.fail(
                ws,
                self.metrics,
                ErrorCode.BINARY_FRAME,
                "text frames only",
                CloseCode.UNSUPPORTED_DATA,
            )
            return None
        try:
            message = codec.decode_client(
                first, max_bytes=self.session_config.limits.max_frame_bytes
            )
        except RemoteProtocolError as exc:
            await wire.fail(ws, self.metrics, exc.error_code, exc.message, CloseCode.PROTOCOL_ERROR)
            return None
        assert ws.request is not None
        client_ip = addresses.client_ip(wire.peer(ws), ws.request.headers, self.config)
        if isinstance(message, Hello):
            return await self.registry.open(ws, message, credential, client_ip)
        if isinstance(message, Resume):
            return await self.registry.resume(ws, message, credential, client_ip)
        await wire.fail(
            ws,
            self.metrics,
            ErrorCode.UNEXPECTED_MESSAGE,
            "first frame must be hello or resume",
            CloseCode.PROTOCOL_ERROR,
        )
        return None

    async def _serve(self, host: SessionHost, ws: ServerConnection) -> None:
        """Run one attached connection until it closes or the session moves elsewhere."""
        connection_id = host.session.connection_id
        # The writer's batches and this loop's errors never interleave, and an error follows
        # whatever the session queued before it (a welcome, a resumed and its replay, replies).
        sending = asyncio.Lock()
        writer = asyncio.create_task(self._write(host, ws, connection_id, sending))
        timer = asyncio.create_task(self._keep_time(host, ws, connection_id))
        host.wake.set()
        # Without a pause between reply chunks, this loop sends what it led to itself when
        # the writer is idle: the welcome or resumed the client waits on, then each frame's
        # answer, with no wake-up and task switch in between (bench resume, throughput).
        # With a pause, the writer sends everything, so reading never waits on a reply.
        inline = not self.config.chunk_delay_s
        bucket = _TokenBucket(self.config.max_frames_per_s, self.config.frame_burst)
        bad_frames = 0
        received = receive_queue(ws)
        # The no-fault plan's hook returns what it is given: not called at every frame then.
        fault_hook = None if type(self.faults).received is FaultPlan.received else self.faults

        async def answer_error(
            code: str,
            message: str,
            close_code: int | None = None,
            retry_after_ms: int | None = None,
        ) -> None:
            async with sending:
                await self._flush(host, ws, connection_id)
                if close_code is None:
                    await wire.send_error(ws, code, message)
                else:
                    await wire.fail(ws, self.metrics, code, message, close_code, retry_after_ms)

        try:
            if inline:
                async with sending:
                    await self._flush(host, ws, connection_id)
            while host.ws is ws:
                frame = await ws.recv()
                self.metrics.messages_in.inc()
                if host.ws is not ws:
                    break
                if isinstance(frame, bytes):
                    await answer_error(
                        ErrorCode.BINARY_FRAME, "text frames only", CloseCode.UNSUPPORTED_DATA
                    )
                    break
                decoded: ClientMessage | RemoteProtocolError
                try:
                    decoded = codec.decode_client(
                        frame, max_bytes=self.session_config.limits.max_frame_bytes
                    )
                except RemoteProtocolError as exc:
                    decoded = exc
                # §12.1: acks and pongs are what §5 and §9 demand of a client; only the other
                # frames (bad ones included) count against the rate limit.
                kind = type(decoded)
                if kind not in _FREE_FRAMES and not bucket.take(time.monotonic()):
                    await answer_error(
                        ErrorCode.RATE_LIMITED,
                        "too many frames",
                        CloseCode.POLICY_VIOLATION,
                        retry_after_ms=bucket.refill_ms,
                    )
                    break
                # What the earlier frames of this read left pending is stored before a frame
                # that reads the store (so its answer sees it), and sent before a bye (which
                # ends the session and drops whatever it has not sent).
                if kind in _READS_STORE:
                    self.registry.write_staged(host)
                elif kind is Bye and inline:
                    async with sending:
                        await self._flush(host, ws, connection_id)
                try:
                    if isinstance(decoded, RemoteProtocolError):
                        raise decoded
                    events = host.session.receive(decoded, self.clock.now())
                    if fault_hook is not None:
                        events = fault_hook.received(host.session, decoded, events)
                except RemoteProtocolError as exc:
                    self.metrics.errors.labels(exc.error_code).inc()
                    log.info("bad frame on session %s: %s", host.session.session_id, exc.message)
                    bad_frames += 1
                    if exc.error_code in _FATAL_ERRORS or bad_frames > self.config.max_bad_frames:
                        await answer_error(exc.error_code, exc.message, _close_code(exc))
                        break
                    await answer_error(exc.error_code, exc.message)
                    continue
                # Staging only while reacting: a commit made meanwhile by anything else (another
                # connection's resume, the sweeper) writes at once, with what is pending.
                host.staging = True
                try:
                    self.application.react(host, events)
                finally:
                    host.staging = False
                if received and received[0].fin:  # the next message is here: answered with this
                    continue
                self.registry.write_staged(host)
                if inline and not sending.locked():
                    async with sending:
                        await self._flush(host, ws, connection_id)
                else:
                    host.wake.set()
        except ConnectionClosed:
            pass
        finally:
            try:
                self.registry.write_staged(host)
            finally:
                for task in (timer, writer):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await task
                self.registry.detach(host, ws, self.clock.now())

    async def _keep_time(self, host: SessionHost, ws: ServerConnection, connection_id: int) -> None:
        """The connection's own timer: wake when the session's next ping or heartbeat deadline
        is due and tick it then, so a 4007 close comes at its deadline (§9) rather than at the
        sweeper's next round."""
        session = host.session
        while host.ws is ws and session.connection_id == connection_id:
            due = session.next_tick_at()
            if due is None:
                return
            await asyncio.sleep(max(0.0, due - self.clock.now()) + _TIMER_SLACK_S)
            if host.ws is ws and session.connection_id == connection_id:
                self.sweeper.tick(host, self.clock.now())

    async def _write(
        self, host: SessionHost, ws: ServerConnection, connection_id: int, sending: asyncio.Lock
    ) -> None:
        """The writer of one connection: sends the session's frames in order."""
        while True:
            await host.wake.wait()
            host.wake.clear()
            if host.ws is not ws or host.session.connection_id != connection_id:
                return
            async with sending:
                await self._flush(host, ws, connection_id)

    async def _flush(self, host: SessionHost, ws: ServerConnection, connection_id: int) -> None:
        """Send what the session queued, if this connection still carries it."""
        self.registry.write_staged(host)  # stored before sent, whichever path sends
        if host.ws is ws and host.session.connection_id == connection_id:
            frames = host.take_first_frames(connection_id) + host.session.data_to_send()
            if not self.config.chunk_delay_s:
                await send_texts(ws, frames)  # one write for them all
                if frames:
                    self.metrics.messages_out.inc(len(frames))
                return
            for frame in frames:
                await ws.send(frame, text=True)
                self.metrics.messages_out.inc()
                if frame.startswith(b'{"type":"reply_chunk"'):
                    await asyncio.sleep(self.config.chunk_delay_s)


def receive_queue(ws: ServerConnection) -> Sequence[Frame]:
    """The frames ``ws`` has received and ``recv()`` has not returned yet, oldest first: when
    the first is a whole message (``fin``), ``recv()`` returns it without waiting, and the
    frames that one read brought (a request and the ack sent with it) are answered together.
    This is websockets' receive queue (``Assembler.frames.queue``, private in websockets 14 to
    17; tests/integration/test_batched_commit.py checks it against the installed version);
    where it is missing, an empty tuple: every frame is answered alone."""
    queue = getattr(getattr(ws.recv_messages, "frames", None), "queue", None)
    return () if queue is None else cast("Sequence[Frame]", queue)


def _close_code(exc: RemoteProtocolError) -> int:
    return (
        int(exc.close_code) if exc.error_code in _FATAL_ERRORS else int(CloseCode.POLICY_VIOLATION)
    )


class _TokenBucket:
    """Flood control: ``rate`` frames per second with bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.last = float(burst), time.monotonic()

    @property
    def refill_ms(self) -> int:
        """§12.1: how long an empty bucket takes to refill, the retry_after_ms of 1008."""
        return math.ceil(1000 * self.burst / self.rate)

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
