"""``langfuse``: OTLP to ``/api/public/otel/v1/traces`` with ``langfuse.*`` attributes
(input, output, usage, session, user, tags, environment) and
``x-langfuse-ingestion-version: 4``; ``api: legacy`` uses ``/api/public/ingestion`` for
v3 servers, retrying only the events a 207 reports as failed."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
import pydantic

from untrace_server.destinations import _langfuse_legacy as legacy
from untrace_server.destinations._batching import deliver
from untrace_server.destinations._connector import HttpConfig, HttpConnector
from untrace_server.destinations._ids import lineage
from untrace_server.destinations._otlp_attrs import genai_attributes
from untrace_server.destinations._otlp_encode import encode_span, export_request
from untrace_server.destinations._view import (
    dumps,
    free_metadata,
    input_messages,
    output_messages,
    output_text,
    tag_list,
    user_id,
)
from untrace_server.destinations.base import BatchResult, HealthStatus
from untrace_server.errors import DeliveryError, PartialDeliveryError, PermanentError
from untrace_server.model import Trace

__all__ = ["LangfuseDestination"]

REGIONS = {
    "eu": "https://cloud.langfuse.com",
    "us": "https://us.cloud.langfuse.com",
    "jp": "https://jp.cloud.langfuse.com",
    "hipaa": "https://hipaa.cloud.langfuse.com",
}
OBSERVATION_TYPES = {
    "llm": "generation",
    "embedding": "embedding",
    "agent": "agent",
    "tool": "tool",
    "chain": "chain",
    "retrieval": "retriever",
}
_encoder = msgspec.json.Encoder()


class LangfuseConfig(HttpConfig):
    public_key: str = pydantic.Field(min_length=1)
    secret_key: pydantic.SecretStr
    region: Literal["eu", "us", "jp", "hipaa"] = "eu"
    endpoint: pydantic.AnyHttpUrl | None = None  # self-hosted base URL; overrides region
    api: Literal["otel", "legacy"] = "otel"
    max_batch_bytes: int = pydantic.Field(3_500_000, ge=1024)  # the documented 3.5 MB

    def base_url(self) -> str:
        return str(self.endpoint or REGIONS[self.region]).rstrip("/")


def langfuse_attributes(trace: Trace) -> dict[str, Any]:
    """GenAI attributes plus the ``langfuse.*`` ones Langfuse reads first."""
    attrs = genai_attributes(trace)
    attrs["langfuse.observation.type"] = OBSERVATION_TYPES.get(trace.kind, "span")
    inputs = input_messages(trace) if trace.request.messages else trace.request.prompt
    outputs = output_messages(trace) if trace.response.messages else output_text(trace)
    if inputs is not None:
        attrs["langfuse.observation.input"] = dumps(inputs)
    if outputs is not None:
        attrs["langfuse.observation.output"] = dumps(outputs)
    if trace.model:
        attrs["langfuse.observation.model.name"] = trace.model
    if trace.request.parameters:
        attrs["langfuse.observation.model.parameters"] = dumps(trace.request.parameters)
    if usage := trace.response.usage:
        attrs["langfuse.observation.usage_details"] = dumps(
            {
                "input": usage.prompt_tokens,
                "output": usage.completion_tokens,
                "total": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
            }
        )
    if trace.metrics.estimated_cost is not None:
        attrs["langfuse.observation.cost_details"] = dumps({"total": trace.metrics.estimated_cost})
    if trace.session_id:
        attrs["langfuse.session.id"] = trace.session_id
    if user := user_id(trace):
        attrs["langfuse.user.id"] = user
    if tags := tag_list(trace):
        attrs["langfuse.trace.tags"] = tags
    if env := trace.metadata.get("environment"):
        attrs["langfuse.environment"] = str(env)
    if version := trace.metadata.get("version"):
        attrs["langfuse.release"] = str(version)
    for key, value in free_metadata(trace).items():
        attrs[f"langfuse.observation.metadata.{key}"] = (
            value if isinstance(value, str | int | float | bool) else dumps(value)
        )
    if trace.parent_id is None:
        attrs["langfuse.trace.name"] = trace.name or trace.model or trace.kind
        for side in ("input", "output"):
            if (value := attrs.get(f"langfuse.observation.{side}")) is not None:
                attrs[f"langfuse.trace.{side}"] = value
    if trace.error:
        attrs["langfuse.observation.level"] = "ERROR"
        attrs["langfuse.observation.status_message"] = trace.error.message
    return attrs


class LangfuseDestination(HttpConnector):
    Config = LangfuseConfig
    what = "Langfuse"

    config: LangfuseConfig

    def client_headers(self) -> dict[str, str]:
        pair = f"{self.config.public_key}:{self.config.secret_key.get_secret_value()}"
        return {"authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    async def send_batch(self, traces: Sequence[Trace]) -> BatchResult:
        if self.config.api == "legacy":
            return await self._send_legacy(traces)
        tree = lineage(traces)
        spans: list[Any] = []
        failed: dict[int, DeliveryError] = {}
        for i, trace in enumerate(traces):
            try:
                span = encode_span(trace, tree, langfuse_attributes, self.config.max_field_bytes)
                spans.append((self._resource(trace), span))
            except (TypeError, ValueError) as exc:
                failed[i] = PermanentError(f"cannot encode trace {trace.id!r}: {exc}")
                spans.append(None)
        url = f"{self.config.base_url()}/api/public/otel/v1/traces"
        headers = {
            "content-type": "application/x-protobuf",
            "content-encoding": "gzip",
            "x-langfuse-ingestion-version": "4",
        }

        async def send(group: list[int]) -> None:
            raw = export_request([spans[i] for i in group]).SerializeToString()
            await self.request("POST", url, content=gzip.compress(raw, 5), headers=headers)

        return await deliver(
            [s[1].ByteSize() if s else 0 for s in spans],
            send,
            max_count=self.config.max_batch_count,
            max_bytes=self.config.max_batch_bytes,
            failed=failed,
        )

    @staticmethod
    def _resource(trace: Trace) -> tuple[tuple[str, str], ...]:
        name = str(trace.metadata.get("applicationId") or "untrace")
        return (("service.name", name),)

    async def _send_legacy(self, traces: Sequence[Trace]) -> BatchResult:
        tree = lineage(traces)
        per_trace = [legacy.events(t, tree, self.config.max_field_bytes) for t in traces]
        sizes = [len(_encoder.encode(evs)) for evs in per_trace]
        url = f"{self.config.base_url()}/api/public/ingestion"

        async def send(group: list[int]) -> None:
            batch = [event for i in group for event in per_trace[i]]
            owners = {event["id"]: pos for pos, i in enumerate(group) for event in per_trace[i]}
            response = await self.request(
                "POST",
                url,
                content=_encoder.encode({"batch": batch}),
                headers={"content-type": "application/json"},
            )
            try:
                answer = response.json() if response.status_code == 207 else {}
            except ValueError:
                answer = {}
            if failed := legacy.failures(answer, owners):
                raise PartialDeliveryError(f"Langfuse rejected {len(failed)} traces", failed)

        return await deliver(
            sizes,
            send,
            max_count=self.config.max_batch_count,
            max_bytes=self.config.max_batch_bytes,
        )

    async def health_check(self) -> HealthStatus:
        return await self.probe("GET", f"{self.config.base_url()}/api/public/health")
