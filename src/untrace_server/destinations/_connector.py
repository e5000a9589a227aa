"""What the HTTP connectors share: config fields for timeouts and platform limits, and a
pooled client created in ``start()`` and closed in ``shutdown()`` (idempotent, safe
without start)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pydantic

from untrace_server.destinations._http import make_client, request
from untrace_server.destinations.base import DestinationConfig, DestinationContext, HealthStatus
from untrace_server.errors import DeliveryError

__all__ = ["HttpConfig", "HttpConnector"]

MiB = 1024 * 1024


class HttpConfig(DestinationConfig):
    timeout_s: float = pydantic.Field(30.0, gt=0, le=600)
    max_batch_count: int = pydantic.Field(100, ge=1, le=10_000)
    max_batch_bytes: int = pydantic.Field(4 * MiB, ge=1024)
    # One string field (an input, an output, a message) longer than this is cut and the
    # trace marked as truncated, rather than dropped.
    max_field_bytes: int = pydantic.Field(256 * 1024, ge=256)
    headers: dict[str, str] = pydantic.Field(default_factory=dict)


class HttpConnector:
    """Base of the HTTP connectors (private; each connector module has one public class)."""

    Config: ClassVar[type[DestinationConfig]] = HttpConfig
    what: ClassVar[str] = "destination"

    def __init__(
        self,
        config: Any,
        context: DestinationContext,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.context = context
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def client_headers(self) -> dict[str, str]:
        return {}

    async def start(self) -> None:
        if self._client is None:
            headers = {**self.client_headers(), **self.config.headers}
            self._client = make_client(
                timeout_s=self.config.timeout_s,
                headers=headers,
                transport=self._transport,
                egress=self.context.egress,
            )

    async def shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def request(
        self, method: str, url: str, *, ok: frozenset[int] = frozenset(), **kwargs: Any
    ) -> httpx.Response:
        return await request(self._client, method, url, what=self.what, ok=ok, **kwargs)

    async def probe(self, method: str, url: str, **kwargs: Any) -> HealthStatus:
        """Healthy when the platform answers and accepts the credentials."""
        try:
            response = await self.request(method, url, ok=frozenset(range(400, 500)), **kwargs)
        except DeliveryError as exc:
            return HealthStatus(healthy=False, detail=str(exc))
        if response.status_code in (401, 403):
            return HealthStatus(
                False, f"{self.what} rejected the credentials (HTTP {response.status_code})"
            )
        if response.status_code == 404:
            return HealthStatus(False, f"{self.what}: {url} not found (HTTP 404)")
        return HealthStatus(True, f"{self.what} reachable (HTTP {response.status_code})")
