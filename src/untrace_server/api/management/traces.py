"""``GET /api/v1/traces/{id}``: where a trace is — accepted and processed, and per
destination pending, retrying, delivered or dead, with attempts and the last error.
``GET /api/v1/traces``: the customer's recent traces, oldest first, from a cursor — what
``untrace traces tail`` follows."""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any

import msgspec
import pydantic
from fastapi import APIRouter, Path, Query, Request

from untrace_server import model
from untrace_server.api.management.deps import Read, Unavailable, Unprocessable, components
from untrace_server.errors import NotFound
from untrace_server.queue.base import DELIVERY_PREFIX, TRACES_TOPIC

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/traces", tags=["traces"])


class DeliveryStatus(pydantic.BaseModel):
    destination: str
    state: str = pydantic.Field(description="pending, retrying, delivered or dead")
    attempts: int
    last_error: str | None
    created_at: float
    done_at: float | None


class TraceStatus(pydantic.BaseModel):
    id: str
    ingest: str | None = pydantic.Field(description="queued or processed; null once pruned")
    deliveries: list[DeliveryStatus]


class TraceSummary(pydantic.BaseModel):
    id: str
    accepted_at: float = pydantic.Field(description="when the trace was accepted (Unix s)")
    start_time: int = pydantic.Field(description="Unix ms")
    end_time: int
    kind: str
    provider: str | None
    model: str | None
    name: str | None
    session_id: str | None
    parent_id: str | None
    total_tokens: int | None
    latency_ms: float | None
    error: str | None = pydantic.Field(description="the trace's error type and message")
    trace: dict[str, Any] | None = pydantic.Field(None, description="the whole trace (full=true)")


class TraceList(pydantic.BaseModel):
    traces: list[TraceSummary]
    cursor: str | None = pydantic.Field(
        description="pass it back to continue after the last trace looked at"
    )


_SCAN_PAGES = 20  # pages of other customers' traces looked at per request, at most


@router.get("", response_model=TraceList, summary="Recent traces, oldest first")
async def list_traces(
    caller: Read,
    request: Request,
    since: Annotated[
        float | None, Query(ge=0, description="accepted at or after (Unix s); default 5 min ago")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="from a previous answer")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    full: Annotated[bool, Query(description="include each whole trace")] = False,
) -> dict[str, Any]:
    """The customer's traces the worker has processed, in the order they were accepted,
    from ``since`` or after ``cursor``. Kept for ``queue.retention_days``."""
    queue = components(request).queue
    if not hasattr(queue, "list_retained"):
        raise Unavailable("this queue backend cannot list retained traces")
    after = _cursor_id(cursor) if cursor else 0
    start = since if since is not None else time.time() - 300
    until = time.time() + 1
    found: list[dict[str, Any]] = []
    page_size = 500
    for _ in range(_SCAN_PAGES):
        page = await queue.list_retained(start, until, after, page_size)
        for message in page:
            after = message.id
            try:
                trace = model.decode(message.payload)
            except msgspec.DecodeError:
                continue
            if trace.customer_id == caller.customer:
                found.append(_summary(trace, message.created_at, full))
                if len(found) == limit:
                    break
        if len(found) == limit or len(page) < page_size:
            break
    return {"traces": found, "cursor": _cursor(after) if after else cursor}


def _summary(trace: model.Trace, accepted_at: float, full: bool) -> dict[str, Any]:
    usage = trace.response.usage
    error = f"{trace.error.type}: {trace.error.message}" if trace.error else None
    return {
        "id": trace.id,
        "accepted_at": accepted_at,
        "start_time": trace.start_time,
        "end_time": trace.end_time,
        "kind": trace.kind,
        "provider": trace.provider,
        "model": trace.model,
        "name": trace.name,
        "session_id": trace.session_id,
        "parent_id": trace.parent_id,
        "total_tokens": usage.total_tokens if usage is not None else None,
        "latency_ms": trace.metrics.latency_ms
        if trace.metrics.latency_ms is not None
        else float(trace.end_time - trace.start_time),
        "error": error,
        "trace": model.to_builtins(trace) if full else None,
    }


def _cursor(message_id: Any) -> str:
    """An opaque cursor: the queue's message id (an int or a string) with its type."""
    tagged = f"i{message_id}" if isinstance(message_id, int) else f"s{message_id}"
    return base64.urlsafe_b64encode(tagged.encode()).decode().rstrip("=")


def _cursor_id(cursor: str) -> Any:
    try:
        tagged = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, value = tagged[0], tagged[1:]
        if kind == "i":
            return int(value)
        if kind == "s" and value:
            return value
    except (ValueError, IndexError):
        pass
    raise Unprocessable("cursor: not a cursor this server gave out")


@router.get("/{trace_id}", response_model=TraceStatus, summary="Delivery status of a trace")
async def trace_status(
    trace_id: Annotated[str, Path(max_length=128)], caller: Read, request: Request
) -> dict[str, Any]:
    queue = components(request).queue
    status = getattr(queue, "trace_status", None)
    if status is None:
        raise Unavailable("this queue backend does not keep delivery status")
    prefix = f"{DELIVERY_PREFIX}{caller.customer}/"
    records = await status(trace_id, prefix)
    deliveries = [
        {
            "destination": r.topic.removeprefix(prefix),
            "state": r.state,
            "attempts": r.attempts,
            "last_error": r.error,
            "created_at": r.created_at,
            "done_at": r.done_at,
        }
        for r in records
        if r.topic != TRACES_TOPIC
    ]
    ingest = None
    if any(r.topic == TRACES_TOPIC for r in records) and await _owned(
        queue, trace_id, caller.customer
    ):
        ingest = [r.state for r in records if r.topic == TRACES_TOPIC][-1]
    elif deliveries:
        ingest = "processed"  # routed: its deliveries exist
    if ingest is None and not deliveries:
        raise NotFound(f"trace {trace_id!r} not found")
    return {"id": trace_id, "ingest": ingest, "deliveries": deliveries}


async def _owned(queue: Any, trace_id: str, customer: str) -> bool:
    """Whether the retained trace of this id belongs to ``customer`` (ids are chosen by
    clients, so two customers may use the same one)."""
    payload = await queue.get_retained(trace_id)
    if payload is None:
        return False
    try:
        return model.decode(payload).customer_id == customer
    except msgspec.DecodeError:
        return False
