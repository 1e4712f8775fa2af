"""The fault layer records every action and sends Toxiproxy only the switches that change."""

from __future__ import annotations

import asyncio

from harness.faults.layer import FaultLayer
from harness.history import FaultAction, History


class CountingApi:
    """A stand-in for ToxiproxyClient that counts proxy switches and takes a while for each."""

    def __init__(self) -> None:
        self.switches: list[bool] = []

    async def set_enabled(self, name: str, enabled: bool) -> None:
        await asyncio.sleep(0.01)
        self.switches.append(enabled)

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await asyncio.sleep(0)


def test_many_clients_taking_the_proxy_down_send_one_call() -> None:
    """Fifty concurrent `down`s (a herd's `proxy_down`) reach Toxiproxy once, and so do fifty
    `up`s; every one of them is in the history; `heal` always enables."""
    api = CountingApi()
    history = History()
    layer = FaultLayer(api, history, "herd")  # type: ignore[arg-type]

    async def run() -> None:
        await asyncio.gather(*(layer.down() for _ in range(50)))
        await asyncio.gather(*(layer.up() for _ in range(50)))
        await layer.down()
        await layer.heal()
        await layer.up()

    asyncio.run(run())
    assert [False, True, False, True] == api.switches
    recorded = [op.body for op in history.ops if op.phase == "invoke"]
    assert ["down"] * 50 + ["up"] * 50 + ["down", "heal", "up"] == [
        b.action for b in recorded if isinstance(b, FaultAction)
    ]
    assert all(op.phase != "fail" for op in history.ops)
