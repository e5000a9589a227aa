"""``datadog``: Datadog LLM Observability span intake v1
(``POST https://api.<site>/api/intake/llm-obs/v1/trace/spans``). Spans older than 24 h
are refused by Datadog, so they fail permanently (dead-letter queue) without a request."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
import pydantic

from untrace_server.destinations._batching import deliver
from untrace_server.destinations._connector import HttpConfig, HttpConnector
from untrace_server.destinations._ids import Lineage, lineage, span_id, trace_id
from untrace_server.destinations._view import (
    Truncator,
    free_metadata,
    input_messages,
    output_messages,
    tag_list,
    user_id,
)
from untrace_server.destinations.base import BatchResult, HealthStatus
from untrace_server.errors import DeliveryError, PermanentError
from untrace_server.model import Trace

__all__ = ["DatadogDestination"]

Site = Literal[
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "uk1.datadoghq.com",
]
MAX_AGE_MS = 24 * 3600 * 1000
KINDS = {
    "llm": "llm",
    "chain": "workflow",
    "tool": "tool",
    "retrieval": "retrieval",
    "embedding": "embedding",
    "agent": "agent",
}
_ML_APP = re.compile(r"[a-z0-9_\-:./]{1,193}")
_encoder = msgspec.json.Encoder()


class DatadogConfig(HttpConfig):
    api_key: pydantic.SecretStr
    site: Site = "datadoghq.com"
    ml_app: str
    endpoint: pydantic.AnyHttpUrl | None = None  # a proxy in front of the intake
    max_batch_bytes: int = pydantic.Field(5_000_000, ge=1024)  # the 5 MB payload limit
    max_field_bytes: int = pydantic.Field(1_000_000, ge=256)

    @pydantic.field_validator("ml_app")
    @classmethod
    def _ml_app(cls, value: str) -> str:
        if not _ML_APP.fullmatch(value):
            raise ValueError("ml_app must be 1-193 lowercase letters, digits or _-:./")
        return value

    def base_url(self) -> str:
        return str(self.endpoint or f"https://api.{self.site}").rstrip("/")


def _io(messages: list[dict[str, Any]], cut: Truncator, side: str) -> dict[str, Any]:
    return {
        "messages": [
            {
                "role": str(m.get("role", "user")),
                "content": cut.text(
                    f"{side}.{i}",
                    m["content"]
                    if isinstance(m.get("content"), str)
                    else msgspec.json.encode(m.get("content")).decode(),
                ),
            }
            for i, m in enumerate(messages)
        ]
    }


def span(trace: Trace, tree: Lineage, max_field_bytes: int) -> dict[str, Any]:
    cut = Truncator(max_field_bytes)
    metadata: dict[str, Any] = {**free_metadata(trace), "untrace_trace_id": trace.id}
    if trace.model:
        metadata["model_name"] = trace.model
    if trace.provider:
        metadata["model_provider"] = trace.provider
    for key in ("temperature", "max_tokens"):
        if (value := trace.request.parameters.get(key)) is not None:
            metadata[key] = value
    meta: dict[str, Any] = {
        "kind": KINDS.get(trace.kind, "task"),
        "metadata": metadata,
        "input": _io(input_messages(trace), cut, "input"),
        "output": _io(output_messages(trace), cut, "output"),
    }
    if trace.error:
        meta["error"] = {
            "type": trace.error.type,
            "message": cut.text("error", trace.error.message),
            "stack": cut.text("stack", trace.error.stack or ""),
        }
    tags = tag_list(trace)
    for key in ("environment", "version"):
        if trace.metadata.get(key):
            tags.append(f"{'env' if key == 'environment' else key}:{trace.metadata[key]}")
    if user := user_id(trace):
        tags.append(f"user_id:{user}")
    body: dict[str, Any] = {
        "name": trace.name or trace.model or trace.kind,
        "span_id": str(int.from_bytes(span_id(trace.id), "big")),
        "trace_id": trace_id(tree.root(trace)).hex(),
        "parent_id": str(int.from_bytes(span_id(trace.parent_id), "big"))
        if trace.parent_id
        else "undefined",
        "start_ns": trace.start_time * 1_000_000,
        "duration": (trace.end_time - trace.start_time) * 1_000_000,
        "status": "error" if trace.error else "ok",
        "meta": meta,
        "tags": tags,
    }
    if usage := trace.response.usage:
        metrics: dict[str, float] = {
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        }
        if trace.metrics.time_to_first_token_ms is not None:
            metrics["time_to_first_token"] = trace.metrics.time_to_first_token_ms / 1000
        body["metrics"] = metrics
    if trace.session_id:
        body["session_id"] = trace.session_id
    if cut.cut:
        metadata["untrace_truncated"] = cut.cut
    return body


class DatadogDestination(HttpConnector):
    Config = DatadogConfig
    what = "Datadog"

    config: DatadogConfig

    def client_headers(self) -> dict[str, str]:
        return {"dd-api-key": self.config.api_key.get_secret_value()}

    async def send_batch(self, traces: Sequence[Trace]) -> BatchResult:
        tree = lineage(traces)
        now_ms = time.time_ns() // 1_000_000
        spans: list[dict[str, Any]] = []
        failed: dict[int, DeliveryError] = {}
        for i, trace in enumerate(traces):
            spans.append(span(trace, tree, self.config.max_field_bytes))
            if now_ms - trace.end_time > MAX_AGE_MS:
                failed[i] = PermanentError(
                    "span older than 24 h: Datadog LLM Observability rejects it"
                )
        url = f"{self.config.base_url()}/api/intake/llm-obs/v1/trace/spans"

        async def send(group: list[int]) -> None:
            body = {
                "data": {
                    "type": "span",
                    "attributes": {
                        "ml_app": self.config.ml_app,
                        "spans": [spans[i] for i in group],
                    },
                }
            }
            await self.request(
                "POST",
                url,
                content=_encoder.encode(body),
                headers={"content-type": "application/json"},
            )

        return await deliver(
            [len(_encoder.encode(s)) for s in spans],
            send,
            max_count=self.config.max_batch_count,
            max_bytes=self.config.max_batch_bytes,
            failed=failed,
        )

    async def health_check(self) -> HealthStatus:
        """``GET /api/v1/validate`` checks the API key."""
        return await self.probe("GET", f"{self.config.base_url()}/api/v1/validate")
