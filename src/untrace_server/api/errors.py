"""The one JSON error shape: ``{"error": {"type", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from untrace_server.errors import IngestError, QueueFull, QueueUnavailable

__all__ = ["error_response", "handle_exception"]

log = logging.getLogger("untrace.api")


def error_response(
    status: int,
    type_: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, "details": details or []}}
    return JSONResponse(body, status_code=status, headers=headers)


async def handle_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, IngestError):
        headers = dict(exc.headers)
        if exc.status == 429 and "retry-after" not in {k.lower() for k in headers}:
            headers["Retry-After"] = "1"
        return error_response(exc.status, exc.type, exc.message, exc.details, headers)
    if isinstance(exc, QueueFull):
        return error_response(
            503, "queue_full", str(exc), headers={"Retry-After": str(int(exc.retry_after))}
        )
    if isinstance(exc, QueueUnavailable):
        return error_response(503, "unavailable", str(exc), headers={"Retry-After": "5"})
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", "internal error")
