"""How a node hears that its connection of a session was taken over or revoked elsewhere.

Each node listens on its own Redis pub/sub channel (``P:node:ID``). A node that accepts a
resume of a session attached to another node publishes ``{sid, att, code}`` there; the other
node closes its connection of any older attach of that session with ``closing`` and ``code``
(4001 taken over, 4005 revoked; §7.3, §7.2.1). Pub/sub delivers at most once: a message lost
with a broken link is made up for by the version check, which refuses the old node's next
commit, and by an audit of every attached session each time the subscription is made again.

The subscription counts as made when Redis confirms it, and as lost when an idle one's ping is
not answered in time: sending to a blackholed link succeeds (the bytes wait in a socket
buffer), so only an answer shows that the link works.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from redis.asyncio.client import PubSub

from reference_server.store.redis import RedisStore

from .link import STORE_ERRORS
from .registry import TAKEN_OVER, ClusterHost, ClusterRegistry, raise_if_cancelled

log = logging.getLogger("reference_server")

PING_EVERY_S = 2.0
"""An idle subscription is pinged this often; unanswered within the node's bound (2 s), it is
taken for lost and made again."""
RESUBSCRIBE_AFTER_S = 0.5


class Evict(msgspec.Struct, frozen=True):
    """Close your connection of ``sid`` if it is of an attach older than ``att``."""

    sid: str
    att: int
    code: int


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Evict)


class Signals:
    """Publishes to other nodes and listens for them, for one node."""

    def __init__(self, *, redis: RedisStore, registry: ClusterRegistry) -> None:
        self.redis = redis
        self.registry = registry
        self.subscribed = asyncio.Event()
        self.received = 0

    async def publish(self, node: str, session_id: str, attached: int, code: int) -> None:
        """Tell ``node`` to drop its older connection of ``session_id``."""
        message = _encoder.encode(Evict(sid=session_id, att=attached, code=code))
        channel = self.redis.node_channel(node)
        await self.registry.link.timed(
            "publish", self.redis.client.publish(channel, message), self.redis.timeout_s
        )

    async def run(self) -> None:
        """Listen until cancelled; subscribe again (and audit) after any failure."""
        channel = self.redis.node_channel(self.registry.node_id)
        link = self.registry.link
        while True:
            pubsub = self.redis.client.pubsub()
            try:
                async with asyncio.timeout(self.redis.timeout_s):
                    await pubsub.subscribe(channel)
                    await self._confirmed(pubsub)
                self.subscribed.set()
                link.subscription(True)
                link.succeeded()
                await self.audit()
                await self._listen(pubsub)
            except STORE_ERRORS as exc:
                self._lost()
                link.failed("subscribe")
                log.warning("pub/sub link lost (%s); subscribing again", exc or type(exc).__name__)
                raise_if_cancelled()
                await asyncio.sleep(RESUBSCRIBE_AFTER_S)
            finally:
                self._lost()
                try:
                    await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]
                except (*STORE_ERRORS, asyncio.CancelledError):
                    pass

    @staticmethod
    async def _confirmed(pubsub: PubSub) -> None:
        """Wait for Redis's confirmation of the subscription (the caller bounds the wait)."""
        while True:
            message = await pubsub.get_message(timeout=0.5)
            if message is not None and message.get("type") == "subscribe":
                return
            raise_if_cancelled()

    async def _listen(self, pubsub: PubSub) -> None:
        """Handle messages until the link fails: an error, or a ping unanswered in time."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged: float | None = None
        """When the ping now unanswered was sent."""
        while True:
            message = await pubsub.get_message(timeout=0.5)
            now = loop.time()
            if message is not None:  # a signal or the pong: the link works
                heard, pinged = now, None
                self.registry.link.succeeded()
                if message.get("type") == "message":
                    self.received += 1
                    self._handle(message["data"])
            raise_if_cancelled()
            if pinged is not None and now - pinged > self.redis.timeout_s:
                raise TimeoutError("the subscription's ping was not answered")
            if pinged is None and now - heard > PING_EVERY_S:
                async with asyncio.timeout(self.redis.timeout_s):
                    await pubsub.ping()
                pinged = now

    def _lost(self) -> None:
        self.subscribed.clear()
        self.registry.link.subscription(False)

    def _handle(self, data: bytes) -> None:
        try:
            evict = _decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("ignored a malformed pub/sub message")
            return
        if self.registry.evict(evict.sid, evict.att, evict.code):
            log.info("session %s moved to another node: connection closed", evict.sid)

    async def audit(self) -> None:
        """Drop every attached session whose Redis copy says another writer took it (a
        message may have been lost while the subscription was down)."""
        registry = self.registry
        for sid, host in list(registry.hosts.items()):
            if not isinstance(host, ClusterHost) or host.lost:
                continue
            found = await self.redis.version(sid)
            moved = found is None or found[1] != registry.node_id or found[0] > host.enqueued
            if moved and registry.hosts.get(sid) is host:
                log.info("audit: session %s is no longer this node's", sid)
                registry.drop(host, TAKEN_OVER)
