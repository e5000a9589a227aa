"""``/api/v1/destinations``: managed destinations of the caller's customer, validated by
the connector's config model; secrets encrypted at rest and masked in every answer.
Destinations declared in the config file are listed (``source: file``) but are
GitOps-owned: changing them here is a 409."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import pydantic
from fastapi import APIRouter, Path, Request, Response

from untrace_server import model
from untrace_server.api.management.deps import Read, Unprocessable, Write
from untrace_server.api.management.deps import components as get_components
from untrace_server.config import DestinationSpec
from untrace_server.control.catalog import DestinationCatalog
from untrace_server.delivery.manager import build_destination
from untrace_server.errors import ConfigError, NotFound
from untrace_server.queue.base import delivery_topic

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/destinations", tags=["destinations"])

DestId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class DestinationBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    type: str = pydantic.Field(max_length=64, description="a connector: webhook, langfuse, …")
    enabled: bool = True
    config: dict[str, Any] = pydantic.Field(default_factory=dict)


class DestinationCreate(DestinationBody):
    id: str = pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class DestinationOut(pydantic.BaseModel):
    id: str
    type: str
    enabled: bool
    config: dict[str, Any] = pydantic.Field(description="secrets masked")
    source: Literal["api", "file"]
    created_at: float | None = None
    updated_at: float | None = None


class DestinationTest(pydantic.BaseModel):
    ok: bool
    latency_ms: float
    error: str | None = None


class DestinationHealth(pydantic.BaseModel):
    id: str
    running: bool
    breaker: str | None
    last_success: float | None
    last_error: str | None
    backlog: int
    dead: int


def _catalog(request: Request) -> DestinationCatalog:
    return DestinationCatalog(get_components(request).topology)


def _invalid(exc: ConfigError) -> Unprocessable:
    return Unprocessable(str(exc))


@router.get("", response_model=list[DestinationOut], summary="List destinations")
async def list_destinations(caller: Read, request: Request) -> list[dict[str, Any]]:
    return list((await _catalog(request).effective(caller.customer)).values())


@router.post("", status_code=201, response_model=DestinationOut, summary="Create a destination")
async def create_destination(
    body: DestinationCreate, caller: Write, request: Request
) -> dict[str, Any]:
    try:
        return await _catalog(request).create(
            caller.customer, body.id, body.type, body.config, body.enabled
        )
    except ConfigError as exc:
        raise _invalid(exc) from None


@router.get("/{dest_id}", response_model=DestinationOut, summary="Read a destination")
async def get_destination(dest_id: DestId, caller: Read, request: Request) -> dict[str, Any]:
    found = (await _catalog(request).effective(caller.customer)).get(dest_id)
    if found is None:
        raise NotFound(f"destination {dest_id!r} not found")
    return found


@router.put(
    "/{dest_id}",
    response_model=DestinationOut,
    summary="Replace a destination (masked secrets sent back keep their stored value)",
    responses={201: {"model": DestinationOut, "description": "created"}},
)
async def put_destination(
    dest_id: DestId, body: DestinationBody, caller: Write, request: Request, response: Response
) -> dict[str, Any]:
    try:
        out, created = await _catalog(request).put(
            caller.customer, dest_id, body.type, body.config, body.enabled
        )
    except ConfigError as exc:
        raise _invalid(exc) from None
    response.status_code = 201 if created else 200
    return out


@router.delete("/{dest_id}", status_code=204, summary="Delete a destination")
async def delete_destination(dest_id: DestId, caller: Write, request: Request) -> Response:
    await _catalog(request).delete(caller.customer, dest_id)
    return Response(status_code=204)


def _spec(request: Request, customer: str, dest_id: str) -> DestinationSpec:
    cust = get_components(request).topology.customers.get(customer)
    for spec in cust.destinations if cust else []:
        if spec.id == dest_id:
            return spec
    raise NotFound(f"destination {dest_id!r} not found")


@router.post(
    "/{dest_id}/test",
    response_model=DestinationTest,
    summary="Send one synthetic trace to the destination and report the result",
)
async def test_destination(dest_id: DestId, caller: Write, request: Request) -> dict[str, Any]:
    c = get_components(request)
    spec = _spec(request, caller.customer, dest_id)
    now = model.now_ms()
    trace = model.from_builtins(
        {
            "id": f"untrace-test-{model.new_id()}",
            "startTime": now - 1,
            "endTime": now,
            "provider": "untrace",
            "model": "connection-test",
            "name": "untrace destination test",
            "metadata": {"customerId": caller.customer, "environment": "untrace-test"},
        }
    )
    started = time.perf_counter()
    error = None
    try:
        destination = build_destination(caller.customer, spec, str(c.settings.data_dir), c.egress)
        await destination.start()
        try:
            await destination.send_batch([trace])
        finally:
            await destination.shutdown()
    except Exception as exc:  # the report is the answer, whatever went wrong
        error = f"{type(exc).__name__}: {exc}"
    return {
        "ok": error is None,
        "latency_ms": (time.perf_counter() - started) * 1000,
        "error": error,
    }


@router.get("/{dest_id}/health", response_model=DestinationHealth, summary="Delivery health")
async def destination_health(dest_id: DestId, caller: Read, request: Request) -> dict[str, Any]:
    c = get_components(request)
    _spec(request, caller.customer, dest_id)
    deliverer = c.delivery.deliverer((caller.customer, dest_id)) if c.delivery else None
    stats = await c.queue.stats()
    topic = delivery_topic(caller.customer, dest_id)
    return {
        "id": dest_id,
        "running": deliverer is not None,
        "breaker": deliverer.breaker.state.name.lower() if deliverer else None,
        "last_success": deliverer.last_success if deliverer else None,
        "last_error": deliverer.last_error if deliverer else None,
        "backlog": stats.pending.get(topic, 0),
        "dead": stats.dead.get(topic, 0),
    }
