"""``/api/v1/rules``: the caller's routing document as versions — read, put, history,
rollback — and ``POST /api/v1/rules/test``, the dry run of ``untrace rules test``."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import pydantic
from fastapi import APIRouter, Request

from untrace_server import model
from untrace_server.api.management.deps import Caller, Read, Unprocessable, Write, components
from untrace_server.errors import ConfigError, NotFound
from untrace_server.pipeline.config import RoutingConfig, build_pipeline
from untrace_server.pipeline.dryrun import explain

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])


class RulesOut(pydantic.BaseModel):
    version: int | None = pydantic.Field(description="stored version; null: the file's")
    source: Literal["store", "file", "none"]
    document: dict[str, Any]


class RulesPut(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    document: dict[str, Any] = pydantic.Field(description="a routing document (DESIGN §7)")
    comment: str = pydantic.Field("", max_length=500)


class RulesVersion(pydantic.BaseModel):
    version: int
    created_at: float
    created_by: str
    comment: str
    document: dict[str, Any]


class Rollback(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    version: int = pydantic.Field(ge=1)


class RulesTest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    trace: dict[str, Any] = pydantic.Field(description="a Trace as JSON")
    document: dict[str, Any] | None = pydantic.Field(None, description="rules to try instead")


def _known(request: Request, customer: str) -> set[str]:
    cust = components(request).topology.customers.get(customer)
    return {d.id for d in cust.destinations if d.enabled} if cust else set()


def _compile(request: Request, caller: Caller, document: dict[str, Any]) -> Any:
    try:
        return build_pipeline(
            document,
            customer_id=caller.customer,
            known_destinations=_known(request, caller.customer),
        )
    except ConfigError as exc:
        raise Unprocessable(str(exc)) from None


def _normal(document: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = RoutingConfig.model_validate(document).model_dump(
        by_alias=True, exclude_none=True
    )
    return out


@router.get("", response_model=RulesOut, summary="The live routing document")
async def get_rules(caller: Read, request: Request) -> dict[str, Any]:
    c = components(request)
    history = await c.store.routing_history(caller.customer)
    if history:
        return {"version": history[0].version, "source": "store", "document": history[0].document}
    file_customer = c.topology.file_customers.get(caller.customer)
    if file_customer is not None:
        return {"version": None, "source": "file", "document": file_customer.routing}
    return {"version": None, "source": "none", "document": {}}


@router.put("", response_model=RulesOut, summary="Store a new version (validated first)")
async def put_rules(body: RulesPut, caller: Write, request: Request) -> dict[str, Any]:
    c = components(request)
    _compile(request, caller, body.document)
    normal = _normal(body.document)
    version = await c.store.put_routing(caller.customer, normal, caller.label, body.comment)
    await c.topology.refresh()
    return {"version": version, "source": "store", "document": normal}


@router.get("/history", response_model=list[RulesVersion], summary="Stored versions, newest first")
async def rules_history(caller: Read, request: Request) -> list[dict[str, Any]]:
    return [
        {
            "version": v.version,
            "created_at": v.created_at,
            "created_by": v.created_by,
            "comment": v.comment,
            "document": v.document,
        }
        for v in await components(request).store.routing_history(caller.customer)
    ]


@router.post("/rollback", response_model=RulesOut, summary="Make an earlier version live again")
async def rollback_rules(body: Rollback, caller: Write, request: Request) -> dict[str, Any]:
    c = components(request)
    found = [v for v in await c.store.routing_history(caller.customer) if v.version == body.version]
    if not found:
        raise NotFound(f"routing version {body.version} not found")
    _compile(request, caller, found[0].document)
    version = await c.store.put_routing(
        caller.customer, found[0].document, caller.label, f"rollback to version {body.version}"
    )
    await c.topology.refresh()
    return {"version": version, "source": "store", "document": found[0].document}


@router.post("/test", summary="Dry run: what the rules would do with a trace (nothing is sent)")
async def test_rules(body: RulesTest, caller: Read, request: Request) -> dict[str, Any]:
    try:
        trace = model.from_builtins(body.trace)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise Unprocessable(f"trace: {exc}") from None
    problems = model.check_trace(trace)
    if problems:
        raise Unprocessable("trace: " + "; ".join(f"{f}: {p}" for f, p in problems))
    trace.metadata["customerId"] = caller.customer
    if body.document is not None:
        document = body.document
    else:
        cust = components(request).topology.customers.get(caller.customer)
        document = cust.routing if cust else {}
    report: dict[str, Any] = explain(_compile(request, caller, document), trace).to_dict()
    return report
