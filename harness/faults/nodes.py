"""The fault layer of a cluster target: one Toxiproxy proxy in front of each node.

A scenario's network faults (``drop`` by ``proxy_down`` or ``half_open``, ``fault`` toxics,
``heal``) hit the link of every node at once, as a client's own network would; what differs
per node is only where a connection goes (``node_address``), which the runner chooses. Each
proxy records its actions in the history as a single proxy does (harness/faults/layer.py).
"""

from __future__ import annotations

from harness.faults.layer import FaultLayer
from harness.faults.toxiproxy_client import Stream, ToxiproxyClient
from harness.history import History


class NodeFaults:
    """``FaultLayer``'s interface over one proxy per node."""

    def __init__(self, api: ToxiproxyClient, history: History, label: str, nodes: int) -> None:
        self.layers = [FaultLayer(api, history, f"{label}-n{i + 1}") for i in range(nodes)]
        self.store = FaultLayer(api, history, f"{label}-store")
        """The nodes' link to Redis: one proxy all nodes connect through."""
        self._toxics: dict[str, list[str]] = {}
        self._store_toxics: list[str] = []

    async def start_store(self, upstream: str) -> tuple[str, int]:
        """The store link's proxy, in front of Redis (before the nodes start)."""
        await self.store.start(upstream)
        return self.store.address

    async def store_link(self, how: str, latency: float | None) -> str:
        """Break the store link: ``cut`` (proxy down), ``slow`` (latency both ways),
        ``blackhole`` (nothing passes, sockets stay open), or ``heal``."""
        if how == "cut":
            await self.store.down()
        elif how == "blackhole":
            await self.store.half_open()
        elif how == "slow":
            millis = round((latency or 0.0) * 1000)
            for stream in ("upstream", "downstream"):
                name = await self.store.add(
                    "latency", {"latency": millis, "jitter": 0}, stream=stream, toxicity=1.0
                )
                self._store_toxics.append(name)
        else:
            self._store_toxics.clear()
            await self.store.heal()
            return "store link healed"
        return f"store link {how}" + (f" by {latency:g} s" if latency else "")

    @property
    def address(self) -> tuple[str, int]:
        """Node 1's proxy: where a connection goes unless the runner chooses another node."""
        return self.layers[0].address

    @property
    def nodes(self) -> int:
        return len(self.layers)

    def node_address(self, index: int) -> tuple[str, int]:
        """Where a connection to node ``index`` (0-based) goes."""
        return self.layers[index].address

    async def start(self, upstream: str) -> None:
        raise TypeError("a cluster's proxies start with start_nodes(upstreams)")

    async def start_nodes(self, upstreams: list[str]) -> None:
        """One proxy in front of each node (host:port each, in node order)."""
        for layer, upstream in zip(self.layers, upstreams, strict=True):
            await layer.start(upstream)

    async def healthy(self, timeout: float) -> bool:
        return await self.layers[0].healthy(timeout)

    async def down(self) -> None:
        for layer in self.layers:
            await layer.down()

    async def up(self) -> None:
        for layer in self.layers:
            await layer.up()

    async def half_open(self) -> None:
        for layer in self.layers:
            await layer.half_open()

    async def add(
        self, kind: str, attributes: dict[str, int | float], *, stream: Stream, toxicity: float
    ) -> str:
        names = [
            await layer.add(kind, attributes, stream=stream, toxicity=toxicity)
            for layer in self.layers
        ]
        self._toxics[names[0]] = names
        return names[0]

    async def remove(self, name: str) -> None:
        for layer, each in zip(self.layers, self._toxics.pop(name, []), strict=False):
            await layer.remove(each)

    async def heal(self) -> None:
        self._toxics.clear()
        for layer in self.layers:
            await layer.heal()

    async def close(self) -> None:
        for layer in [*self.layers, self.store]:
            if layer.port:
                await layer.close()
