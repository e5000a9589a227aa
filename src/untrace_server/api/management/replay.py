"""``POST /api/v1/replay``: re-send retained traces of a time range (and an optional
condition filter) to ONE destination — the backfill of a newly added platform.

The traces (acked ``traces`` messages, kept ``queue.retention_days``) go through the
customer's live pipeline; only routes to the target are kept and published to its
outbox, so no other destination receives anything twice. A trace the target already
has (a delivery record exists) is skipped unless ``include_delivered``. A job runs in
the process that accepted it and writes its progress to the control store after every
page, so ``GET /api/v1/replay/{job}`` answers on every node of a fleet; a job whose
node stopped writing for ``STALE_S`` shows as ``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import msgspec
import pydantic
from fastapi import APIRouter, Path, Request

from untrace_server import model
from untrace_server.api.management.deps import Read, Unavailable, Unprocessable, Write, components
from untrace_server.errors import ConfigError, NotFound
from untrace_server.pipeline.conditions import compile_condition
from untrace_server.pipeline.config import ConditionGroup
from untrace_server.queue.base import delivery_topic

__all__ = ["ReplayJob", "router", "run_replay"]

router = APIRouter(prefix="/api/v1/replay", tags=["replay"])
log = logging.getLogger("untrace.replay")

_PAGE = 500
STALE_S = 60.0  # a running job not written for this long lost its node


class ReplayRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    destination: str = pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    since: float = pydantic.Field(ge=0, description="accepted at or after (Unix s)")
    until: float | None = pydantic.Field(None, ge=0, description="before (Unix s); default now")
    filter: dict[str, Any] | None = pydantic.Field(
        None, description="a condition group, as in routing rules: {all|any|not: …}"
    )
    include_delivered: bool = False


@dataclass
class ReplayJob:
    id: str
    customer: str
    destination: str
    since: float
    until: float
    state: str = "running"  # running, done, failed
    scanned: int = 0
    matched: int = 0
    published: int = 0
    skipped: int = 0
    error: str | None = None
    started_at: float = 0.0
    finished_at: float | None = None


class ReplayOut(pydantic.BaseModel):
    id: str
    destination: str
    since: float
    until: float
    state: Literal["running", "done", "failed", "interrupted"]
    scanned: int
    matched: int
    published: int
    skipped: int
    error: str | None
    started_at: float
    finished_at: float | None


def _out(job: ReplayJob) -> dict[str, Any]:
    out = asdict(job)
    del out["customer"]
    return out


async def run_replay(c: Any, job: ReplayJob, match: Any, include_delivered: bool) -> None:
    """Page through the retained traces of the range and publish the target's routes."""
    queue, topic = c.queue, delivery_topic(job.customer, job.destination)
    after: Any = 0
    try:
        while True:
            page = await queue.list_retained(job.since, job.until, after, _PAGE)
            if not page:
                break
            after = page[-1].id
            items: list[tuple[str, bytes]] = []
            for message in page:
                job.scanned += 1
                try:
                    trace = model.decode(message.payload)
                except msgspec.DecodeError:
                    continue
                if trace.customer_id != job.customer or (match and not match(trace)):
                    continue
                pipeline = c.topology.pipeline(job.customer)
                if pipeline is None:
                    continue
                decide = getattr(pipeline, "decide", None)
                routes = decide(trace, record=False).routes if decide else pipeline.process(trace)
                routes = [r for r in routes if r.destination_id == job.destination]
                if not routes:
                    continue
                job.matched += 1
                if not include_delivered and any(
                    r.topic == topic for r in await queue.trace_status(message.key, topic)
                ):
                    job.skipped += 1
                    continue
                items.extend((r.trace.id, model.encode(r.trace)) for r in routes)
            if items:
                await queue.publish(topic, items)
                job.published += len(items)
            await _save(c, job)
        job.state = "done"
    except Exception as exc:
        job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        job.finished_at = time.time()
        await _save(c, job)


async def _save(c: Any, job: ReplayJob) -> None:
    """Write the job's progress for every node to read; a store hiccup is not the job's
    failure (the next page writes again)."""
    try:
        await c.store.save_replay_job(job.customer, job.id, _out(job))
    except Exception as exc:
        log.warning("replay %s: progress not saved: %s", job.id, exc)


def _jobs(request: Request) -> dict[str, ReplayJob]:
    state = request.app.state
    if not hasattr(state, "replay_jobs"):
        state.replay_jobs = {}
        state.replay_tasks = set()
    jobs: dict[str, ReplayJob] = state.replay_jobs
    return jobs


@router.post("", status_code=202, response_model=ReplayOut, summary="Start a replay (backfill)")
async def start_replay(body: ReplayRequest, caller: Write, request: Request) -> dict[str, Any]:
    c = components(request)
    if not hasattr(c.queue, "list_retained"):
        raise Unavailable("this queue backend cannot list retained traces")
    cust = c.topology.customers.get(caller.customer)
    if cust is None or body.destination not in {d.id for d in cust.destinations}:
        raise NotFound(f"destination {body.destination!r} not found")
    until = body.until if body.until is not None else time.time()
    if until <= body.since:
        raise Unprocessable("until must be after since")
    match = None
    if body.filter is not None:
        try:
            ConditionGroup.model_validate(body.filter)
            match = compile_condition(body.filter, "replay filter")
        except (pydantic.ValidationError, ConfigError, ValueError) as exc:
            raise Unprocessable(f"filter: {exc}") from None
    job = ReplayJob(
        id=uuid.uuid4().hex,
        customer=caller.customer,
        destination=body.destination,
        since=body.since,
        until=until,
        started_at=time.time(),
    )
    _jobs(request)[job.id] = job
    await c.store.save_replay_job(job.customer, job.id, _out(job))
    task = asyncio.create_task(run_replay(c, job, match, body.include_delivered))
    tasks: set[asyncio.Task[None]] = request.app.state.replay_tasks
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    with contextlib.suppress(TimeoutError):  # small replays answer finished
        await asyncio.wait_for(asyncio.shield(task), 0.2)
    return _out(job)


@router.get("", response_model=list[ReplayOut], summary="Replay jobs, newest first")
async def list_replays(caller: Read, request: Request) -> list[dict[str, Any]]:
    local = _jobs(request)
    stored = await components(request).store.list_replay_jobs(caller.customer)
    return [_current(job, local) for job in stored]


@router.get("/{job_id}", response_model=ReplayOut, summary="Progress of a replay job")
async def get_replay(
    job_id: Annotated[str, Path(max_length=64)], caller: Read, request: Request
) -> dict[str, Any]:
    job = _jobs(request).get(job_id)
    if job is not None and job.customer == caller.customer:
        return _out(job)  # running here: the live counts
    found = await components(request).store.get_replay_job(caller.customer, job_id)
    if found is None:
        raise NotFound(f"replay job {job_id!r} not found")
    stored, updated_at = found
    return _current({**stored, "updated_at": updated_at}, {})


def _current(stored: dict[str, Any], local: dict[str, ReplayJob]) -> dict[str, Any]:
    """A stored job as it is now: this node's live counts if it runs here; a running
    job that nobody has written for STALE_S is interrupted (its node went away)."""
    job = local.get(stored["id"])
    if job is not None:
        return _out(job)
    updated_at = stored.pop("updated_at")
    if stored["state"] == "running" and time.time() - updated_at > STALE_S:
        stored["state"] = "interrupted"
    return stored
