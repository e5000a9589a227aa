"""The management API (DESIGN §4): keys, destinations, rules, dead letters, trace status
and replay, as a FastAPI application mounted next to the Starlette hot paths; it serves
the whole API's ``/openapi.json`` and ``/docs``. Errors keep the one JSON shape."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from untrace_server import __version__
from untrace_server.api.errors import error_response, handle_exception
from untrace_server.api.management import destinations, dlq, keys, replay, rules, traces
from untrace_server.api.management.surface import SURFACE_PATHS
from untrace_server.errors import ConfigError, UntraceError

if TYPE_CHECKING:
    from untrace_server.app import Components

__all__ = ["build_management_app"]


class ErrorDetail(pydantic.BaseModel):
    type: str
    message: str
    details: list[dict[str, Any]]


class ErrorBody(pydantic.BaseModel):
    error: ErrorDetail


_STATUS_TYPES = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    501: "not_supported",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": kind}
    for status, kind in _STATUS_TYPES.items()
    if status in (401, 403, 404, 409, 422, 429, 501)
}


class NativeIngest(pydantic.BaseModel):
    traces: list[dict[str, Any]] = pydantic.Field(description="Traces (DESIGN §6)")


class Accepted(pydantic.BaseModel):
    accepted: int
    ids: list[str]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(
        exc.status_code,
        _STATUS_TYPES.get(exc.status_code, "error"),
        str(exc.detail),
        headers=dict(exc.headers or {}),
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {
            "field": ".".join(str(p) for p in err.get("loc", ())),
            "problem": str(err.get("msg", "")),
        }
        for err in exc.errors()
    ]
    return error_response(422, "invalid_request", "the request is invalid", details)


async def _config_error(request: Request, exc: Exception) -> Response:
    return error_response(422, "invalid_config", str(exc))


def build_management_app(components: Components) -> FastAPI:
    api = FastAPI(
        title="Untrace",
        version=__version__,
        description="Trace forwarding for LLM observability: ingest once, deliver everywhere.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        exception_handlers={
            HTTPException: _http_error,
            RequestValidationError: _validation_error,
            ConfigError: _config_error,
            UntraceError: handle_exception,
            Exception: handle_exception,
        },
    )
    api.state.components = components
    for module in (keys, destinations, rules, dlq, traces, replay):
        api.include_router(module.router, responses=ERRORS)

    @api.post(
        "/api/v1/traces",
        status_code=202,
        response_model=Accepted,
        tags=["ingest"],
        summary="Native ingest: one Trace or {traces: [...]} (served by the ingest path)",
        responses={**ERRORS, 400: ERRORS[422], 413: ERRORS[422], 415: ERRORS[422]},
    )
    async def native_ingest_doc(body: NativeIngest) -> Response:  # pragma: no cover
        raise HTTPException(405)  # the Starlette route in front of this one answers

    generate = api.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the capture and operations routes in front of it."""
        if api.openapi_schema is None:
            schema = generate()
            schema["paths"] = {**schema["paths"], **SURFACE_PATHS}
        return api.openapi_schema  # type: ignore[return-value]

    api.openapi = openapi  # type: ignore[method-assign]
    return api
