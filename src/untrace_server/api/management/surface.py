"""OpenAPI path items for the routes served in front of the management app — capture
(OTLP, proxy, LangSmith/Langfuse compatibility, webhooks) and operations (health,
readiness, metrics) — so ``/openapi.json`` describes the whole HTTP surface.

They carry the tag ``capture`` or ``operations``; their bodies are other projects' wire
formats (OTLP protobuf, the OpenAI and Anthropic APIs, LangSmith runs), described by
reference rather than re-specified here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SURFACE_PATHS"]

_ERROR = {"$ref": "#/components/schemas/ErrorBody"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _op(
    summary: str,
    tag: str,
    *,
    body: dict[str, Any] | None = None,
    responses: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses or {}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if params:
        op["parameters"] = params
    if not secured:
        op["security"] = []
    return op


_PATH = [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}]
_AUTH_ERRORS = {"401": _error("missing or invalid key"), "403": _error("key lacks the scope")}
_BACKPRESSURE = {
    "429": _error("rate limited (Retry-After)"),
    "503": _error("queue full (Retry-After)"),
}
_ANY = {"description": "relayed from the upstream provider unchanged"}
_PROXY_ERRORS = {
    "502": {"description": "upstream unreachable (provider error shape)"},
    "503": {"description": "upstream circuit breaker open (Retry-After)"},
    "504": {"description": "upstream timed out"},
}

SURFACE_PATHS: dict[str, dict[str, Any]] = {
    "/v1/traces": {
        "post": _op(
            "OTLP/HTTP traces (protobuf or JSON, gzip); GenAI, OpenInference, OpenLLMetry, "
            "LangSmith and Langfuse attributes become Traces. Key in Authorization: Bearer "
            "or x-untrace-key.",
            "capture",
            body={
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object"}},
            },
            responses={
                "200": {
                    "description": "ExportTraceServiceResponse (partial_success if spans "
                    "were rejected)"
                },
                "400": {"description": "malformed body (google.rpc.Status)"},
                "415": {"description": "unsupported content type"},
                **_AUTH_ERRORS,
                **_BACKPRESSURE,
            },
        )
    },
    "/openai/v1/{path}": {
        method: _op(
            "Transparent proxy to the OpenAI-compatible upstream; the provider key stays in "
            "Authorization, the Untrace key goes in X-Untrace-Key; X-Untrace-* headers add "
            "trace metadata and are not sent upstream.",
            "capture",
            params=_PATH,
            responses={"default": _ANY, **_PROXY_ERRORS},
        )
        for method in ("get", "post", "delete")
    },
    "/anthropic/v1/{path}": {
        method: _op(
            "Transparent proxy to the Anthropic API (streaming included); Untrace key in "
            "X-Untrace-Key.",
            "capture",
            params=_PATH,
            responses={"default": _ANY, **_PROXY_ERRORS},
        )
        for method in ("get", "post")
    },
    "/langsmith/{path}": {
        method: _op(
            "LangSmith-compatible ingestion: GET /info, POST /runs, PATCH /runs/{id}, "
            "POST /runs/batch, POST /runs/multipart (the Untrace key as x-api-key).",
            "capture",
            params=_PATH,
            responses={"200": {"description": "as the LangSmith API answers"}, **_AUTH_ERRORS},
        )
        for method in ("get", "post", "patch")
    },
    "/langfuse/api/public/{path}": {
        "post": _op(
            "Langfuse-compatible ingestion: otel/v1/traces (OTLP) and the legacy ingestion "
            "endpoint (207 per event); Basic auth with the Untrace key as the secret.",
            "capture",
            params=_PATH,
            responses={
                "200": {"description": "OTLP response"},
                "207": {"description": "per-event results (legacy ingestion)"},
                **_AUTH_ERRORS,
            },
        )
    },
    "/api/v1/webhooks/{source}": {
        "post": _op(
            "Webhook ingestion: the source's JSONPath mapping (config) turns the body into "
            "Traces; 'raw' keeps the body under metadata. Optional HMAC signature check.",
            "capture",
            body={"application/json": {"schema": {}}},
            params=[
                {"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            responses={
                "202": {"description": "accepted: {accepted, ids}"},
                "404": _error("unknown source"),
                **_AUTH_ERRORS,
                **_BACKPRESSURE,
            },
        )
    },
    "/health": {
        "get": _op("Liveness", "operations", secured=False,
                   responses={"200": {"description": "{status: ok, version}"}})
    },
    "/ready": {
        "get": _op("Readiness: the queue and the control store answer", "operations",
                   secured=False, responses={"200": {"description": "ready"},
                                             "503": {"description": "not ready, with problems"}})
    },
    "/metrics": {
        "get": _op("Prometheus metrics (text exposition format)", "operations", secured=False,
                   responses={"200": {"description": "text/plain; version=0.0.4"}})
    },
}  # fmt: skip
