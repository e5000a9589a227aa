"""``GET /api/v1/traces/{id}``: where a trace is — accepted and processed, and per
destination pending, retrying, delivered or dead, with attempts and the last error."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pydantic
from fastapi import APIRouter, Path, Request

from untrace_server import model
from untrace_server.api.management.deps import Read, Unavailable, components
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
