"""The embedded reference server as a cluster: N node processes sharing one real Redis.

Each node is ``python -m reference_server --store redis://... --node-id nK`` in a child
process; Redis is a real ``redis-server`` (append-only) in the target's temporary folder, on
a free loopback port (reference_server/redis_process.py). The fault layer puts each node
behind its own Toxiproxy proxy (harness/faults/nodes.py); the runner sends every resume of a
client to the next node, so a suite that passes here passes with every resume on another node
than the one the session was on (docs/cluster.md). Drivers know nothing of nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
from pathlib import Path

from harness.checkers import metric_samples
from harness.targets.base import TargetError, fetch_metrics
from reference_server import admin, auth
from reference_server.launcher import ServerProcess, ServerStartError
from reference_server.redis_process import RedisProcess, RedisUnavailableError
from reference_server.store.redis import RedisStore

_CONNECTIONS_METRIC = "ws_connections"


class ClusterTarget:
    """N reference server nodes on one Redis."""

    def __init__(
        self,
        *,
        nodes: int,
        virtual_clock: bool,
        plant_fault: str | None = None,
        server_args: tuple[str, ...] = (),
    ) -> None:
        if nodes < 2:
            raise ValueError("a cluster target has at least two nodes")
        self.capabilities = frozenset(
            {"restart", "metrics", "embedded", "inspect_store", "nodes"}
            | ({"virtual_clock"} if virtual_clock else set())
        )
        self._workdir = Path(tempfile.mkdtemp(prefix="harness-cluster-"))
        self._secret = secrets.token_urlsafe(32)
        self._admin = secrets.token_urlsafe(16)
        self._virtual_clock = virtual_clock
        self._plant_fault = plant_fault
        self._server_args = server_args
        self.count = nodes
        try:
            self.redis: RedisProcess | None = RedisProcess(self._workdir / "redis")
        except RedisUnavailableError as exc:
            raise TargetError(str(exc)) from None
        self.store_address: tuple[str, int] | None = None
        """Where the nodes reach Redis: the store link's proxy once the fault layer made it
        (``store_upstream`` is what it forwards to); Redis itself without one."""
        self.nodes: list[ServerProcess] = []
        self.url = ""
        self.description = f"embedded reference cluster ({nodes} nodes on Redis)"
        self._advanced = 0.0

    @property
    def node_urls(self) -> list[str]:
        """Each node's URL, in node order."""
        return [node.url for node in self.nodes]

    def _node_args(self, index: int, store: str) -> list[str]:
        args = [
            "--store",
            store,
            "--node-id",
            f"n{index + 1}",
            "--trusted-proxy",
            "127.0.0.1/32",
            *self._server_args,
        ]
        if self._plant_fault is not None:
            args += ["--plant-fault", self._plant_fault]
        if self._virtual_clock:
            args.append("--virtual-clock")
        return args

    @property
    def store_upstream(self) -> str:
        """host:port of Redis itself, for the store link's proxy."""
        assert self.redis is not None
        return f"127.0.0.1:{self.redis.port}"

    async def start(self) -> None:
        assert self.redis is not None
        try:
            await asyncio.to_thread(self.redis.start)
        except RedisUnavailableError as exc:
            raise TargetError(str(exc)) from None
        host, port = self.store_address or ("127.0.0.1", self.redis.port)
        store = f"redis://{host}:{port}/0"
        env = {
            "REFERENCE_SERVER_AUTH_SECRET": self._secret,
            "REFERENCE_SERVER_ADMIN_TOKEN": self._admin,
        }
        self.nodes = [
            ServerProcess(
                self._node_args(i, store),
                env=env,
                log_path=self._workdir / f"node-{i + 1}.log",
            )
            for i in range(self.count)
        ]
        try:
            for node in self.nodes:
                await node.start()
        except ServerStartError as exc:
            raise TargetError(str(exc)) from None
        self.url = self.nodes[0].url
        clock = "virtual clock" if self._virtual_clock else "real clock"
        self.description = (
            f"embedded reference cluster: {self.count} nodes on Redis {self.redis.url} "
            f"({', '.join(self.node_urls)}; {clock})"
        )

    def credential_for(self, user: str) -> str:
        return auth.mint(user, self._secret, ttl_s=24 * 3600)

    async def advance_clock(self, seconds: float) -> None:
        """Every node's clock moves by the same amount (nodes share time)."""
        for node in self._running():
            await admin.advance_clock(node.url, self._admin, seconds)
        self._advanced += seconds

    def _running(self) -> list[ServerProcess]:
        return [n for n in self.nodes if n.process is not None and n.process.returncode is None]

    async def restart(self) -> None:
        """SIGKILL every node and start them again on the same Redis and ports."""
        try:
            for node in self.nodes:
                await node.kill()
                await node.start()
                if self._advanced:
                    await admin.advance_clock(node.url, self._admin, self._advanced)
        except ServerStartError as exc:
            raise TargetError(str(exc)) from None

    async def kill_node(self, node: int) -> None:
        """SIGKILL node ``node`` (1-based)."""
        await self.nodes[node - 1].kill()

    async def start_node(self, node: int) -> None:
        """Start node ``node`` again, on its port, id and Redis, its clock where it was."""
        process = self.nodes[node - 1]
        try:
            await process.start()
        except ServerStartError as exc:
            raise TargetError(str(exc)) from None
        if self._advanced:
            await admin.advance_clock(process.url, self._admin, self._advanced)

    async def metrics(self) -> str | None:
        """Every node's samples added up, one line per name (counters and gauges of a cluster
        are the sums of its nodes')."""
        totals: dict[str, float] = {}
        answered = False
        for node in self._running():
            text = await fetch_metrics(node.url)
            if text is None:
                continue
            answered = True
            for name, value in metric_samples(text).items():
                totals[name] = totals.get(name, 0.0) + value
        if not answered:
            return None
        return "".join(f"{name} {value!r}\n" for name, value in totals.items())

    async def settle(self, connected: int, timeout: float) -> None:
        """Poll the nodes' connection gauges until together they count no more than
        ``connected``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            text = await self.metrics()
            value = metric_samples(text).get(_CONNECTIONS_METRIC) if text else None
            if value is None or value <= connected:
                return
            await asyncio.sleep(0.01)

    async def stored_rows(self, session: str) -> dict[str, int]:
        """What Redis holds for ``session``, read with a client of the harness's own."""
        assert self.redis is not None
        store = RedisStore(self.redis.url)
        try:
            return await store.holds(session)
        finally:
            await store.close()

    def log_tail(self) -> str:
        return "\n".join(f"--- node {i + 1}\n{n.log_tail()}" for i, n in enumerate(self.nodes))

    async def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                await node.stop()
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)
        shutil.rmtree(self._workdir, ignore_errors=True)
