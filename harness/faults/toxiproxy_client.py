"""An async client for Toxiproxy's HTTP API, with a timeout on every call (docs/toxiproxy.md).

Toxiproxy's control API can hang when toxics are removed under traffic (fixed upstream after
the version we pin), so a call that does not answer in time raises ``ToxiproxyApiError``, an
infrastructure error: the run stops and says so instead of hanging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from harness.errors import HarnessInfrastructureError

Stream = Literal["downstream", "upstream"]


class ToxiproxyApiError(HarnessInfrastructureError):
    """Toxiproxy refused a call, answered with an error, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy as Toxiproxy reports it."""

    name: str
    listen: str
    upstream: str
    enabled: bool

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


class ToxiproxyClient:
    """``async with ToxiproxyClient(url) as api: await api.create_proxy(...)``."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        # trust_env=False: a proxy variable in the environment must never reroute loopback.
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, trust_env=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TimeoutException:
            raise ToxiproxyApiError(f"Toxiproxy did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise ToxiproxyApiError(f"Toxiproxy {method} {path} failed: {exc}") from None
        if response.status_code >= 400:
            detail = response.text.strip()
            raise ToxiproxyApiError(
                f"Toxiproxy {method} {path} answered {response.status_code}: {detail}"
            )
        return response.json() if response.content else None

    async def version(self) -> str:
        """The server's version string."""
        response = await self._http.get("/version")
        return response.text.strip()

    async def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> Proxy:
        """Create an enabled proxy; ``listen`` port 0 lets Toxiproxy pick a free one."""
        data = await self._call(
            "POST",
            "/proxies",
            {"name": name, "listen": listen, "upstream": upstream, "enabled": True},
        )
        return _proxy(data)

    async def proxies(self) -> dict[str, Proxy]:
        """Every proxy, by name."""
        data = await self._call("GET", "/proxies")
        return {name: _proxy(value) for name, value in data.items()}

    async def set_enabled(self, name: str, enabled: bool) -> Proxy:
        """Disable (every connection cut, new ones refused) or re-enable a proxy."""
        return _proxy(await self._call("POST", f"/proxies/{name}", {"enabled": enabled}))

    async def delete_proxy(self, name: str) -> None:
        """Remove a proxy and close its connections."""
        await self._call("DELETE", f"/proxies/{name}")

    async def add_toxic(
        self,
        proxy: str,
        name: str,
        kind: str,
        attributes: Mapping[str, int | float],
        *,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
    ) -> dict[str, Any]:
        """Add a toxic; return it as Toxiproxy reports it."""
        body = {
            "name": name,
            "type": kind,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes),
        }
        result: dict[str, Any] = await self._call("POST", f"/proxies/{proxy}/toxics", body)
        return result

    async def toxics(self, proxy: str) -> list[dict[str, Any]]:
        """The toxics on a proxy."""
        result: list[dict[str, Any]] = await self._call("GET", f"/proxies/{proxy}/toxics")
        return result

    async def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove one toxic (removing a ``timeout`` toxic closes its connections)."""
        await self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")


def _proxy(data: Mapping[str, Any]) -> Proxy:
    return Proxy(
        name=str(data["name"]),
        listen=str(data["listen"]),
        upstream=str(data["upstream"]),
        enabled=bool(data["enabled"]),
    )
