"""``langsmith``: runs to LangSmith through ``POST /runs/batch`` (default) or
``POST /runs/multipart``. Run ids are UUIDv5 of the Untrace id, so a redelivery answers
409, which is success (the run exists)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import pydantic

from untrace_server.destinations._batching import deliver
from untrace_server.destinations._connector import HttpConfig, HttpConnector, MiB
from untrace_server.destinations._ids import Lineage, lineage, run_uuid
from untrace_server.destinations._view import (
    Truncator,
    free_metadata,
    input_messages,
    iso,
    output_messages,
    output_text,
    tag_list,
    user_id,
)
from untrace_server.destinations.base import BatchResult, HealthStatus
from untrace_server.errors import DeliveryError, PermanentError
from untrace_server.model import Trace

__all__ = ["LangsmithDestination"]

REGIONS = {
    "us": "https://api.smith.langchain.com",
    "eu": "https://eu.api.smith.langchain.com",
    "apac": "https://apac.api.smith.langchain.com",
    "aws": "https://aws.api.smith.langchain.com",
}
RUN_TYPES = {
    "llm": "llm",
    "chain": "chain",
    "tool": "tool",
    "retrieval": "retriever",
    "embedding": "embedding",
    "agent": "chain",
}
_LARGE_FIELDS = ("inputs", "outputs", "error", "extra", "events", "serialized")
_encoder = msgspec.json.Encoder()


class LangsmithConfig(HttpConfig):
    api_key: pydantic.SecretStr
    region: Literal["us", "eu", "apac", "aws"] = "us"
    # Self-hosted: the API URL (often ending in /api/v1); overrides ``region``.
    endpoint: pydantic.AnyHttpUrl | None = None
    project: str = pydantic.Field("default", min_length=1)
    workspace_id: str | None = None  # X-Tenant-Id, for org-scoped keys
    api: Literal["batch", "multipart"] = "batch"
    max_batch_bytes: int = pydantic.Field(20 * MiB, ge=1024)  # the SDK's default limit

    def base_url(self) -> str:
        return str(self.endpoint or REGIONS[self.region]).rstrip("/")


def _segment(ms: int, run_id: str) -> str:
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return when.strftime("%Y%m%dT%H%M%S%fZ") + str(run_uuid(run_id))


def _outputs(trace: Trace) -> dict[str, Any]:
    messages = output_messages(trace)
    if trace.kind == "llm" and messages:
        finish = trace.response.finish_reason
        return {"choices": [{"message": m, "finish_reason": finish} for m in messages]}
    text = output_text(trace)
    return {"output": text} if text is not None else {}


def _metadata(trace: Trace) -> dict[str, Any]:
    meta: dict[str, Any] = {**free_metadata(trace), "untrace_trace_id": trace.id}
    for key in ("environment", "version", "applicationId"):
        if trace.metadata.get(key) is not None:
            meta[key] = trace.metadata[key]
    if trace.provider:
        meta["ls_provider"] = trace.provider
    if trace.model:
        meta["ls_model_name"] = trace.model
    if trace.session_id:  # LangSmith groups runs into threads by this key
        meta["thread_id"] = meta["session_id"] = trace.session_id
    if user := user_id(trace):
        meta["user_id"] = user
    if usage := trace.response.usage:
        usage_metadata: dict[str, Any] = {
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        }
        if usage.cached_tokens is not None:
            usage_metadata["input_token_details"] = {"cache_read": usage.cached_tokens}
        if trace.metrics.estimated_cost is not None:
            usage_metadata["total_cost"] = trace.metrics.estimated_cost
        meta["usage_metadata"] = usage_metadata
    return meta


def run(trace: Trace, tree: Lineage, project: str, max_field_bytes: int) -> dict[str, Any]:
    """One LangSmith run (the shape of ``POST /runs/batch`` items)."""
    cut = Truncator(max_field_bytes)
    inputs: dict[str, Any] = {}
    if trace.request.messages:
        inputs["messages"] = input_messages(trace)
    elif trace.request.prompt is not None:
        inputs["prompt"] = trace.request.prompt
    if trace.request.tools:
        inputs["tools"] = trace.request.tools
    body: dict[str, Any] = {
        "id": str(run_uuid(trace.id)),
        "trace_id": str(run_uuid(tree.root(trace))),
        "dotted_order": ".".join(_segment(ms, rid) for rid, ms in tree.chain(trace)),
        "name": trace.name or trace.model or trace.kind,
        "run_type": RUN_TYPES.get(trace.kind, "chain"),
        "session_name": project,
        "start_time": iso(trace.start_time),
        "end_time": iso(trace.end_time),
        "inputs": _fit(cut, "inputs", inputs),
        "outputs": _fit(cut, "outputs", _outputs(trace)),
        "extra": {"metadata": _metadata(trace), "invocation_params": trace.request.parameters},
        "tags": tag_list(trace),
    }
    if trace.parent_id:
        body["parent_run_id"] = str(run_uuid(trace.parent_id))
    if trace.error:
        error = f"{trace.error.type}: {trace.error.message}"
        body["error"] = cut.text(
            "error", error + (f"\n{trace.error.stack}" if trace.error.stack else "")
        )
    if cut.cut:
        body["extra"]["metadata"]["untrace_truncated"] = cut.cut
    return body


def _fit(cut: Truncator, name: str, value: dict[str, Any]) -> dict[str, Any]:
    fitted = cut.json(name, value)
    return fitted if isinstance(fitted, dict) else {"truncated": fitted}


def multipart(runs: Sequence[dict[str, Any]]) -> tuple[bytes, str]:
    """``multipart/form-data`` for ``/runs/multipart``: ``post.<id>`` plus one part per
    large field, each with its own Content-Type and Content-Length."""
    boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for body in runs:
        core = {k: v for k, v in body.items() if k not in _LARGE_FIELDS}
        parts = [(f"post.{body['id']}", core)]
        parts += [(f"post.{body['id']}.{k}", body[k]) for k in _LARGE_FIELDS if k in body]
        for name, value in parts:
            data = _encoder.encode(value)
            chunks.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                + data
                + b"\r\n"
            )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


class LangsmithDestination(HttpConnector):
    Config = LangsmithConfig
    what = "LangSmith"

    config: LangsmithConfig

    def client_headers(self) -> dict[str, str]:
        headers = {"x-api-key": self.config.api_key.get_secret_value()}
        if self.config.workspace_id:
            headers["x-tenant-id"] = self.config.workspace_id
        return headers

    async def send_batch(self, traces: Sequence[Trace]) -> BatchResult:
        tree = lineage(traces)
        runs: list[dict[str, Any]] = []
        sizes: list[int] = []
        failed: dict[int, DeliveryError] = {}
        for i, trace in enumerate(traces):
            try:
                runs.append(run(trace, tree, self.config.project, self.config.max_field_bytes))
                sizes.append(len(_encoder.encode(runs[-1])))
            except (TypeError, ValueError, msgspec.EncodeError) as exc:
                failed[i] = PermanentError(f"cannot encode trace {trace.id!r}: {exc}")
                runs.append({})
                sizes.append(0)

        async def send(group: list[int]) -> None:
            await self.post([runs[i] for i in group])

        return await deliver(
            sizes,
            send,
            max_count=self.config.max_batch_count,
            max_bytes=self.config.max_batch_bytes,
            failed=failed,
        )

    async def post(self, runs: list[dict[str, Any]]) -> None:
        base = self.config.base_url()
        if self.config.api == "multipart":
            body, content_type = multipart(runs)
            response = await self.request(
                "POST",
                f"{base}/runs/multipart",
                content=body,
                headers={"content-type": content_type},
                ok=frozenset({404, 409}),
            )
            if response.status_code != 404:
                return  # 404: an older server without multipart; fall back to batch
        await self.request(
            "POST",
            f"{base}/runs/batch",
            ok=frozenset({409}),
            content=_encoder.encode({"post": runs, "patch": []}),
            headers={"content-type": "application/json"},
        )

    async def health_check(self) -> HealthStatus:
        return await self.probe("GET", f"{self.config.base_url()}/info")
