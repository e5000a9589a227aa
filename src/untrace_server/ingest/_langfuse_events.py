"""Langfuse legacy ingestion events (``POST /api/public/ingestion``) → Traces.

Events are grouped by ``body.id`` and merged (``*-create`` then ``*-update`` in batch
order). A ``trace-create`` becomes a ``chain`` trace with the Langfuse trace id; every
observation becomes a trace whose ``parentId`` is its ``parentObservationId`` or else the
Langfuse trace id, and whose ``metadata.rootId`` is the Langfuse trace id, so the tree
forwards as it was. Session, user and tags of a trace in the same batch are copied to
its observations. An update arriving in a later batch is forwarded on its own under the
same id (destinations upsert by id).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from untrace_server.ingest._content import as_text, messages_from
from untrace_server.model import (
    Request,
    Response,
    Trace,
    TraceError,
    TraceMetrics,
    Usage,
    check_trace,
)

__all__ = ["EVENT_KINDS", "events_to_traces"]

EVENT_KINDS = {
    "trace": "chain",
    "span": "chain",
    "generation": "llm",
    "event": "chain",
    "agent": "agent",
    "tool": "tool",
    "chain": "chain",
    "retriever": "retrieval",
    "evaluator": "chain",
    "embedding": "embedding",
    "guardrail": "chain",
    "observation": "chain",
}
IGNORED = {"score-create", "sdk-log", "dataset-run-item-create"}


def _ms(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def _usage(body: dict[str, Any]) -> Usage | None:
    details = body.get("usageDetails") or body.get("usage")
    if not isinstance(details, dict):
        return None
    prompt = details.get("input", details.get("promptTokens", details.get("input_tokens")))
    completion = details.get("output", details.get("completionTokens"))
    total = details.get("total", details.get("totalTokens"))
    if prompt is None and completion is None and total is None:
        return None
    p, c = int(prompt or 0), int(completion or 0)
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=int(total or p + c))


def _body_to_trace(kind_name: str, body: dict[str, Any], trace_body: dict[str, Any]) -> Trace:
    kind = EVENT_KINDS.get(kind_name, "chain")
    is_trace = kind_name == "trace"
    start = _ms(body.get("startTime")) or _ms(body.get("timestamp")) or 0
    end = max(_ms(body.get("endTime")) or start, start)
    inputs, outputs = body.get("input"), body.get("output")
    in_msgs, out_msgs = messages_from(inputs), messages_from(outputs)
    metadata: dict[str, Any] = {}
    if isinstance(body.get("metadata"), dict):
        metadata.update(body["metadata"])
    root = str(body["id"]) if is_trace else str(body.get("traceId") or "")
    if root:
        metadata["rootId"] = root
    source = body if is_trace else trace_body
    if user := source.get("userId"):
        metadata["userId"] = str(user)
    for key in ("environment", "version"):
        if value := body.get(key) or source.get(key):
            metadata[key] = str(value)
    if release := source.get("release"):
        metadata["release"] = release
    if isinstance(source.get("tags"), list) and source["tags"]:
        metadata["tags"] = {str(t): "" for t in source["tags"]}
    level = body.get("level")
    error = None
    if level == "ERROR":
        error = TraceError(type="error", message=str(body.get("statusMessage") or "error"))
    params = body.get("modelParameters")
    completion_start = _ms(body.get("completionStartTime"))
    parent = body.get("parentObservationId") or (None if is_trace else body.get("traceId"))
    return Trace(
        id=str(body["id"]),
        parent_id=str(parent) if parent else None,
        session_id=as_text(source.get("sessionId")),
        start_time=start,
        end_time=end,
        model=as_text(body.get("model")),
        name=as_text(body.get("name")),
        kind=kind,
        request=Request(
            messages=in_msgs,
            prompt=None if in_msgs else as_text(inputs),
            parameters=dict(params) if isinstance(params, dict) else {},
        ),
        response=Response(
            messages=out_msgs, content=None if out_msgs else as_text(outputs), usage=_usage(body)
        ),
        metadata=metadata,
        metrics=TraceMetrics(
            latency_ms=float(end - start) if body.get("endTime") else None,
            time_to_first_token_ms=float(completion_start - start) if completion_start else None,
        ),
        error=error,
    )


def events_to_traces(
    events: list[dict[str, Any]],
) -> tuple[list[Trace], list[str], list[tuple[str, int, str]]]:
    """(traces, ids of the events they came from, errors as (event id, status, message))."""
    merged: dict[str, tuple[str, dict[str, Any], list[str]]] = {}
    errors: list[tuple[str, int, str]] = []
    ignored: list[str] = []
    for event in events:
        event_id = str(event.get("id", ""))
        kind = str(event.get("type", ""))
        body = event.get("body")
        if kind in IGNORED:
            ignored.append(event_id)
            continue
        name, _, action = kind.rpartition("-")
        if name not in EVENT_KINDS or action not in ("create", "update"):
            errors.append((event_id, 400, f"unknown event type {kind!r}"))
            continue
        if not isinstance(body, dict) or not body.get("id"):
            errors.append((event_id, 400, "event body must be an object with an 'id'"))
            continue
        key = str(body["id"])
        previous = merged.get(key)
        if previous is None:
            merged[key] = (name, dict(body), [event_id])
        else:
            kept = previous[0] if previous[0] != "observation" else name
            merged[key] = (
                kept,
                {**previous[1], **{k: v for k, v in body.items() if v is not None}},
                [*previous[2], event_id],
            )
    traces_by_id = {k: v[1] for k, v in merged.items() if v[0] == "trace"}
    traces: list[Trace] = []
    ok: list[str] = list(ignored)
    for name, body, ids in merged.values():
        trace_body = traces_by_id.get(str(body.get("traceId")), {}) if name != "trace" else body
        try:
            trace = _body_to_trace(name, body, trace_body)
        except (TypeError, ValueError) as exc:
            errors.extend((i, 400, f"invalid event body: {exc}") for i in ids)
            continue
        if problems := check_trace(trace):
            errors.extend((i, 400, f"{problems[0][0]} {problems[0][1]}") for i in ids)
            continue
        traces.append(trace)
        ok.extend(ids)
    return traces, ok, errors
