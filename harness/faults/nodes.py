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
        self._toxics: dict[str, list[str]] = {}

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
        for layer in self.layers:
            if layer.port:
                await layer.close()
