"""``webhook``: POST ``{"traces": [Trace, ...]}`` as JSON to a URL, optionally signed with
HMAC-SHA256 (``X-Untrace-Signature: sha256=<hex>`` over the exact body)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import ClassVar

import httpx
import msgspec
import pydantic

from untrace_server.destinations._http import make_client
from untrace_server.destinations.base import (
    BatchResult,
    DestinationConfig,
    DestinationContext,
    HealthStatus,
    classify_http_status,
)
from untrace_server.errors import RetryableError
from untrace_server.model import Trace

__all__ = ["WebhookDestination"]


class WebhookConfig(DestinationConfig):
    url: pydantic.AnyHttpUrl
    secret: str | None = None
    headers: dict[str, str] = pydantic.Field(default_factory=dict)
    timeout_s: float = pydantic.Field(30.0, gt=0)


_encoder = msgspec.json.Encoder()


class WebhookDestination:
    Config: ClassVar[type[DestinationConfig]] = WebhookConfig

    def __init__(self, config: WebhookConfig, context: DestinationContext) -> None:
        self.config = config
        self.context = context
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = make_client(timeout_s=self.config.timeout_s, egress=self.context.egress)

    def body(self, traces: Sequence[Trace]) -> bytes:
        return _encoder.encode({"traces": list(traces)})

    def signature(self, body: bytes) -> str | None:
        if not self.config.secret:
            return None
        digest = hmac.new(self.config.secret.encode(), body, hashlib.sha256).hexdigest()
        return f"sha256={digest}"

    async def send_batch(self, traces: Sequence[Trace]) -> BatchResult:
        await self.start()
        assert self._client is not None
        body = self.body(traces)
        headers = {"content-type": "application/json", **self.config.headers}
        signature = self.signature(body)
        if signature:
            headers["x-untrace-signature"] = signature
        try:
            response = await self._client.post(str(self.config.url), content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RetryableError(f"webhook unreachable: {type(exc).__name__}: {exc}") from exc
        classify_http_status(
            response.status_code,
            body=response.text,
            retry_after=response.headers.get("retry-after"),
            what="webhook",
        )
        return BatchResult(delivered=len(traces))

    async def health_check(self) -> HealthStatus:
        return HealthStatus(healthy=self._client is not None, detail=str(self.config.url))

    async def shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
