"""``helicone``: Helicone's custom log endpoint (``POST /custom/v1/log``), one trace per
request. Helicone headers (user, session, properties) ride in ``providerRequest.meta``,
where the worker reads them. A 200 whose body carries ``error`` is a failure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pydantic

from untrace_server.destinations._batching import deliver
from untrace_server.destinations._connector import HttpConfig, HttpConnector, MiB
from untrace_server.destinations._ids import Lineage, lineage
from untrace_server.destinations._view import (
    Truncator,
    free_metadata,
    input_messages,
    output_messages,
    tags,
    user_id,
)
from untrace_server.destinations.base import BatchResult, HealthStatus
from untrace_server.errors import RetryableError
from untrace_server.model import Trace, derived_uuid

__all__ = ["HeliconeDestination"]

_encoder = msgspec.json.Encoder()


class HeliconeConfig(HttpConfig):
    api_key: pydantic.SecretStr
    endpoint: pydantic.AnyHttpUrl = pydantic.AnyHttpUrl("https://api.worker.helicone.ai")
    concurrency: int = pydantic.Field(8, ge=1, le=64)
    max_batch_count: int = pydantic.Field(1, ge=1, le=1)  # the endpoint takes one log
    max_batch_bytes: int = pydantic.Field(10 * MiB, ge=1024)  # the worker's 10 MB limit
    max_field_bytes: int = pydantic.Field(1 * MiB, ge=256)


def _split_ms(ms: int) -> dict[str, int]:
    return {"seconds": ms // 1000, "milliseconds": ms % 1000}


def _meta(trace: Trace, tree: Lineage) -> dict[str, str]:
    meta = {"Helicone-Request-Id": str(derived_uuid(trace.id, "helicone"))}
    if user := user_id(trace):
        meta["Helicone-User-Id"] = user
    session = trace.session_id or (tree.root(trace) if trace.parent_id else None)
    if session:
        meta["Helicone-Session-Id"] = session
        meta["Helicone-Session-Path"] = "/" + "/".join(rid for rid, _ in tree.chain(trace))
        meta["Helicone-Session-Name"] = str(trace.metadata.get("applicationId") or "untrace")
    properties = {**{k: v for k, v in free_metadata(trace).items()}, **tags(trace)}
    for key in ("environment", "version"):
        if trace.metadata.get(key) is not None:
            properties[key] = trace.metadata[key]
    properties["untrace-trace-id"] = trace.id
    for key, value in properties.items():
        text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
        meta[f"Helicone-Property-{key}"] = text
    return meta


def log(trace: Trace, tree: Lineage, max_field_bytes: int) -> dict[str, Any]:
    """One ``HeliconeAsyncLogRequest``."""
    cut = Truncator(max_field_bytes)
    request: dict[str, Any] = {"model": trace.model, **trace.request.parameters}
    request["messages"] = [
        {**m, "content": cut.text(f"messages.{i}", m["content"])}
        if isinstance(m.get("content"), str)
        else m
        for i, m in enumerate(input_messages(trace))
    ]
    if trace.request.tools:
        request["tools"] = trace.request.tools
    response: dict[str, Any] = {
        "id": str(derived_uuid(trace.id, "helicone")),
        "object": "chat.completion",
        "model": trace.model,
        "created": trace.end_time // 1000,
        "choices": [
            {
                "index": i,
                "finish_reason": trace.response.finish_reason,
                "message": {**m, "content": cut.text(f"output.{i}", m["content"])}
                if isinstance(m.get("content"), str)
                else m,
            }
            for i, m in enumerate(output_messages(trace))
        ],
    }
    if usage := trace.response.usage:
        response["usage"] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        }
    if trace.error:
        response["error"] = {
            "type": trace.error.type,
            "message": cut.text("error", trace.error.message),
        }
    meta = _meta(trace, tree)
    if cut.cut:
        meta["Helicone-Property-untrace-truncated"] = ",".join(cut.cut)
    timing: dict[str, Any] = {
        "startTime": _split_ms(trace.start_time),
        "endTime": _split_ms(trace.end_time),
    }
    if trace.metrics.time_to_first_token_ms is not None:
        timing["timeToFirstToken"] = trace.metrics.time_to_first_token_ms
    return {
        "providerRequest": {"url": "custom-model-nopath", "json": request, "meta": meta},
        "providerResponse": {
            "json": response,
            "status": 500 if trace.error else 200,
            "headers": {},
        },
        "timing": timing,
    }


class HeliconeDestination(HttpConnector):
    Config = HeliconeConfig
    what = "Helicone"

    config: HeliconeConfig

    def client_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.config.api_key.get_secret_value()}"}

    def url(self) -> str:
        return str(self.config.endpoint).rstrip("/") + "/custom/v1/log"

    async def send_batch(self, traces: Sequence[Trace]) -> BatchResult:
        tree = lineage(traces)
        bodies = [_encoder.encode(log(t, tree, self.config.max_field_bytes)) for t in traces]

        async def send(group: list[int]) -> None:
            (index,) = group
            response = await self.request(
                "POST",
                self.url(),
                content=bodies[index],
                headers={"content-type": "application/json"},
            )
            try:
                answer = response.json()
            except ValueError:
                return  # "ok"
            if isinstance(answer, dict) and answer.get("error"):
                # The worker answers 200 {"error": ...} when storing the log failed.
                raise RetryableError(f"Helicone answered 200 with error: {answer['error']}")

        return await deliver(
            [len(b) for b in bodies],
            send,
            max_count=1,
            max_bytes=self.config.max_batch_bytes,
            concurrency=self.config.concurrency,
        )

    async def health_check(self) -> HealthStatus:
        """The worker has no health route: an empty log must be refused with 400 (schema),
        not 401 (credentials)."""
        return await self.probe(
            "POST", self.url(), content=b"{}", headers={"content-type": "application/json"}
        )
