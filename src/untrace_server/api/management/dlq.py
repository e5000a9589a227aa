"""``/api/v1/dlq``: the caller's dead letters — list with filters (destination, error
text, time), replay one, a filter or all, purge."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Query, Request

from untrace_server.api.management.deps import Caller, Read, Unavailable, Unprocessable, Write
from untrace_server.api.management.deps import components as get_components
from untrace_server.queue.base import DELIVERY_PREFIX, DeadLetter

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/dlq", tags=["dead letters"])

_SCAN = 10_000  # dead letters read per destination for one request


class DeadLetterOut(pydantic.BaseModel):
    id: str
    destination: str
    trace_id: str
    attempts: int
    error: str
    created_at: float
    dead_at: float


class DlqFilter(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    ids: list[str] | None = pydantic.Field(None, max_length=10_000)
    destination: str | None = pydantic.Field(None, max_length=64)
    error: str | None = pydantic.Field(None, max_length=500, description="text in the error")
    since: float | None = pydantic.Field(None, description="dead at or after (Unix s)")
    until: float | None = pydantic.Field(None, description="dead before (Unix s)")
    all: bool = pydantic.Field(False, description="required to act on every dead letter")


class DlqResult(pydantic.BaseModel):
    count: int


async def _letters(request: Request, caller: Caller, f: DlqFilter) -> list[DeadLetter]:
    """The caller's dead letters matching ``f`` — read per destination topic of the
    customer only, so another customer's letters are never even loaded."""
    queue = get_components(request).queue
    prefix = f"{DELIVERY_PREFIX}{caller.customer}/"
    topics = [t for t in (await queue.stats()).dead if t.startswith(prefix)]
    if f.destination is not None:
        topics = [t for t in topics if t == prefix + f.destination]
    wanted = set(f.ids) if f.ids is not None else None
    out: list[DeadLetter] = []
    for topic in sorted(topics):
        for d in await queue.list_dead(topic, _SCAN):
            if wanted is not None and str(d.id) not in wanted:
                continue
            if f.error is not None and f.error.lower() not in d.error.lower():
                continue
            if f.since is not None and d.dead_at < f.since:
                continue
            if f.until is not None and d.dead_at >= f.until:
                continue
            out.append(d)
    return out


def _out(d: DeadLetter) -> dict[str, Any]:
    return {
        "id": str(d.id),
        "destination": d.topic.rpartition("/")[2],
        "trace_id": d.key,
        "attempts": d.attempts,
        "error": d.error,
        "created_at": d.created_at,
        "dead_at": d.dead_at,
    }


@router.get("", response_model=list[DeadLetterOut], summary="List dead letters")
async def list_dlq(
    caller: Read,
    request: Request,
    destination: Annotated[str | None, Query(max_length=64)] = None,
    error: Annotated[str | None, Query(max_length=500)] = None,
    since: float | None = None,
    until: float | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    f = DlqFilter(destination=destination, error=error, since=since, until=until)
    return [_out(d) for d in (await _letters(request, caller, f))[:limit]]


def _check(f: DlqFilter) -> None:
    targeted = (f.ids, f.destination, f.error, f.since, f.until) != (None,) * 5
    if not f.all and not targeted:
        raise Unprocessable("give ids or a filter, or all=true to act on every dead letter")


def _by_topic(letters: list[DeadLetter]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for d in letters:
        grouped.setdefault(d.topic, []).append(d.id)
    return grouped


@router.post("/replay", response_model=DlqResult, summary="Make dead letters deliverable again")
async def replay_dlq(body: DlqFilter, caller: Write, request: Request) -> dict[str, int]:
    _check(body)
    queue = get_components(request).queue
    count = 0
    for topic, ids in _by_topic(await _letters(request, caller, body)).items():
        count += await queue.replay_dead(topic, ids)
    return {"count": count}


@router.post("/purge", response_model=DlqResult, summary="Delete dead letters for good")
async def purge_dlq(body: DlqFilter, caller: Write, request: Request) -> dict[str, int]:
    _check(body)
    queue = get_components(request).queue
    purge = getattr(queue, "purge_dead", None)
    if purge is None:
        raise Unavailable("this queue backend cannot purge dead letters")
    count = 0
    for topic, ids in _by_topic(await _letters(request, caller, body)).items():
        count += await purge(topic, ids)
    return {"count": count}
