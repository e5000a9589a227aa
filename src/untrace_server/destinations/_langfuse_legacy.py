"""Langfuse's legacy ``POST /api/public/ingestion`` batch format (v3 servers only): one
``trace-create`` and one observation event per trace, event ids derived from the trace
id (the server dedupes on them), and the 207 per-event answer mapped back to traces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from untrace_server.destinations._ids import Lineage, span_id, trace_id
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
from untrace_server.errors import DeliveryError, PermanentError, RetryableError
from untrace_server.model import Trace, derived_uuid

__all__ = ["events", "failures"]

_OBSERVATION_EVENTS = {
    "llm": "generation-create",
    "embedding": "embedding-create",
    "agent": "agent-create",
    "tool": "tool-create",
    "chain": "chain-create",
    "retrieval": "retriever-create",
}


def _iso(ms: int) -> str:
    return iso(ms).replace("+00:00", "Z")


def events(trace: Trace, tree: Lineage, max_field_bytes: int) -> list[dict[str, Any]]:
    cut = Truncator(max_field_bytes)
    root = tree.root(trace)
    tid = trace_id(root).hex()
    stamp = _iso(trace.end_time)
    messages = input_messages(trace)
    inputs: Any = messages if trace.request.messages else trace.request.prompt
    outputs: Any = output_messages(trace) if trace.response.messages else output_text(trace)
    metadata = {**free_metadata(trace), "untrace_trace_id": trace.id}
    trace_body: dict[str, Any] = {"id": tid, "timestamp": _iso(trace.start_time)}
    for key, value in (
        ("sessionId", trace.session_id),
        ("userId", user_id(trace)),
        ("environment", trace.metadata.get("environment")),
        ("release", trace.metadata.get("version")),
    ):
        if value:
            trace_body[key] = value
    if tags := tag_list(trace):
        trace_body["tags"] = tags
    if root == trace.id:
        trace_body.update(
            name=trace.name or trace.model or trace.kind,
            metadata=metadata,
            input=cut.json("trace.input", inputs),
            output=cut.json("trace.output", outputs),
        )
    observation: dict[str, Any] = {
        "id": span_id(trace.id).hex(),
        "traceId": tid,
        "name": trace.name or trace.model or trace.kind,
        "startTime": _iso(trace.start_time),
        "endTime": _iso(trace.end_time),
        "input": cut.json("input", inputs),
        "output": cut.json("output", outputs),
        "metadata": metadata,
    }
    if trace.parent_id:
        observation["parentObservationId"] = span_id(trace.parent_id).hex()
    if env := trace.metadata.get("environment"):
        observation["environment"] = env
    if trace.error:
        observation["level"] = "ERROR"
        observation["statusMessage"] = cut.text(
            "statusMessage", f"{trace.error.type}: {trace.error.message}"
        )
    if trace.kind == "llm":
        observation["model"] = trace.model
        observation["modelParameters"] = trace.request.parameters
        if usage := trace.response.usage:
            observation["usageDetails"] = {
                "input": usage.prompt_tokens,
                "output": usage.completion_tokens,
                "total": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
            }
        if trace.metrics.estimated_cost is not None:
            observation["costDetails"] = {"total": trace.metrics.estimated_cost}
        if trace.metrics.time_to_first_token_ms is not None:
            observation["completionStartTime"] = _iso(
                trace.start_time + int(trace.metrics.time_to_first_token_ms)
            )
    if cut.cut:
        metadata["untrace_truncated"] = cut.cut
    kind = _OBSERVATION_EVENTS.get(trace.kind, "span-create")
    return [
        {
            "id": str(derived_uuid(trace.id, "langfuse", "trace-create")),
            "timestamp": stamp,
            "type": "trace-create",
            "body": trace_body,
        },
        {
            "id": str(derived_uuid(trace.id, "langfuse", kind)),
            "timestamp": stamp,
            "type": kind,
            "body": observation,
        },
    ]


def failures(answer: Any, owners: dict[str, int]) -> dict[int, DeliveryError]:
    """Map a 207 body's ``errors`` (event ids) to the positions of their traces. Only the
    events that failed are retried: 429 and 5xx are retryable, other statuses permanent."""
    failed: dict[int, DeliveryError] = {}
    errors: Sequence[Any] = answer.get("errors", []) if isinstance(answer, dict) else []
    for error in errors:
        position = owners.get(str(error.get("id")))
        if position is None:
            continue
        status = int(error.get("status") or 500)
        message = (
            f"Langfuse rejected event {error.get('id')} with {status}: "
            f"{error.get('message') or error.get('error') or ''}".strip()
        )
        retryable = status == 429 or status >= 500
        if retryable and not isinstance(failed.get(position), PermanentError):
            failed[position] = RetryableError(message)
        elif not retryable:
            failed[position] = PermanentError(message)
    return failed
