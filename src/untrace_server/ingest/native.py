"""``POST /api/v1/traces``: one Trace or ``{"traces": [...]}``, all or nothing.

Every trace of a batch is validated before anything is written; one invalid trace
rejects the whole request with a detail per problem (index, field, problem).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from untrace_server import model
from untrace_server.config import IngestConfig
from untrace_server.control.auth import Authenticator, bearer_token
from untrace_server.errors import InvalidPayload, PayloadTooLarge
from untrace_server.ingest.base import TraceSink, read_body
from untrace_server.ingest.fit import fit

__all__ = ["NativeReceiver", "parse_traces"]

_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_trace_decoder = msgspec.json.Decoder(model.Trace)
_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


def _detail(index: int | None, exc: msgspec.ValidationError) -> dict[str, Any]:
    match = _AT.match(str(exc))
    assert match is not None
    problem = match.group("problem")
    path = (match.group("path") or "").lstrip(".")
    missing = _MISSING.match(problem)
    if missing:
        path = f"{path}.{missing.group('field')}" if path else missing.group("field")
        problem = "required field is missing"
    detail: dict[str, Any] = {"field": path or "$", "problem": problem}
    if index is not None:
        detail["index"] = index
    return detail


def parse_traces(body: bytes, config: IngestConfig) -> list[model.Trace]:
    """Decode and validate a native ingest body. Raises InvalidPayload (400 malformed,
    422 schema) or PayloadTooLarge with a detail per problem."""
    try:
        top = _object_decoder.decode(body)
    except msgspec.ValidationError:
        raise InvalidPayload(
            'body must be a JSON object: a Trace or {"traces": [...]}', status=422
        ) from None
    except msgspec.DecodeError as exc:
        raise InvalidPayload(f"malformed JSON: {exc}") from None
    batch = "traces" in top
    if batch:
        try:
            raws: Sequence[msgspec.Raw] = _list_decoder.decode(top["traces"])
        except msgspec.ValidationError:
            raise InvalidPayload(
                "'traces' must be an array",
                status=422,
                details=[{"field": "traces", "problem": "must be an array"}],
            ) from None
        if not raws:
            raise InvalidPayload("'traces' is empty", status=422)
        if len(raws) > config.max_traces_per_request:
            raise PayloadTooLarge(
                f"{len(raws)} traces in one request; the limit is {config.max_traces_per_request}"
            )
    else:
        raws = [msgspec.Raw(body)]

    traces: list[model.Trace] = []
    details: list[dict[str, Any]] = []
    too_large: list[dict[str, Any]] = []
    for index, raw in enumerate(raws):
        where = index if batch else None
        oversized = len(raw) > config.max_trace_bytes
        if oversized and config.oversized_traces == "reject":
            too_large.append(_too_large(index, f"trace exceeds {config.max_trace_bytes} bytes"))
            continue
        try:
            trace = _trace_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            details.append(_detail(where, exc))
            continue
        problems = model.check_trace(trace)
        for field, problem in problems:
            detail: dict[str, Any] = {"field": field, "problem": problem}
            if where is not None:
                detail["index"] = where
            details.append(detail)
        if oversized and not problems:
            fitted = fit(trace, config.max_trace_bytes)
            if fitted is None:
                too_large.append(
                    _too_large(
                        index,
                        f"trace exceeds {config.max_trace_bytes} bytes even with every "
                        "string cut: its bulk is not text",
                    )
                )
                continue
            trace = fitted
        traces.append(trace)
    if too_large:
        raise PayloadTooLarge("a trace exceeds the per-trace size limit", details=too_large)
    if details:
        count = len({d.get("index") for d in details})
        what = f"{count} of {len(raws)} traces are invalid" if batch else "the trace is invalid"
        raise InvalidPayload(f"{what}; nothing was accepted", status=422, details=details)
    return traces


def _too_large(index: int, problem: str) -> dict[str, Any]:
    return {"index": index, "field": "$", "problem": problem}


class NativeReceiver:
    def __init__(self, sink: TraceSink, auth: Authenticator, config: IngestConfig) -> None:
        self.sink = sink
        self.auth = auth
        self.config = config

    def routes(self) -> Sequence[BaseRoute]:
        return [Route("/api/v1/traces", self.post_traces, methods=["POST"])]

    async def post_traces(self, request: Request) -> JSONResponse:
        key = await self.auth.authenticate(
            bearer_token(request.headers.get("authorization"))
            or request.headers.get("x-untrace-key"),
            "ingest",
        )
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise InvalidPayload(
                f"Content-Type must be application/json, got {content_type or 'none'!r}",
                status=415,
            )
        body = await read_body(request, self.config.max_body_bytes)
        traces = parse_traces(body, self.config)
        ids = await self.sink.submit(traces, key.customer_id)
        return JSONResponse({"accepted": len(ids), "ids": ids}, status_code=202)
