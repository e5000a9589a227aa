"""OTLP/HTTP request handling shared by ``POST /v1/traces`` and Langfuse's
``/api/public/otel/v1/traces``: content negotiation, decoding, span → Trace, durable
submit, and the OTLP response semantics.

- 200 + ``ExportTraceServiceResponse`` (protobuf or JSON, as the request) once the
  accepted spans are durable; rejected spans are counted in ``partialSuccess``.
- 400 malformed body, 415 other content types / encodings, 413 too large: a protobuf
  ``google.rpc.Status`` (or its JSON form) as the spec asks; not retryable.
- 503 + Retry-After when the queue is full or unavailable (retryable per the spec);
  429 + Retry-After from rate limiting.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from typing import Any

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from starlette.requests import Request
from starlette.responses import Response

from untrace_server.errors import IngestError, QueueFull, QueueUnavailable
from untrace_server.ingest._otlp_decode import MalformedOtlp, decode_json, decode_protobuf
from untrace_server.ingest._otlp_map import span_to_trace
from untrace_server.ingest.base import TraceSink, read_body
from untrace_server.model import Trace, check_trace

__all__ = ["OtlpHandler"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ROOT_CACHE = 65_536


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _status_body(media: str, code: int, message: str) -> bytes:
    """``google.rpc.Status{code, message}`` without a dependency on googleapis protos."""
    if media == JSON:
        return msgspec.json.encode({"code": code, "message": message})
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _grpc_code(status: int) -> int:
    return {400: 3, 401: 16, 403: 7, 404: 5, 413: 11, 415: 3, 429: 8, 503: 14}.get(status, 13)


class OtlpHandler:
    def __init__(self, sink: TraceSink, max_body_bytes: int) -> None:
        self.sink = sink
        self.max_body_bytes = max_body_bytes
        # trace id → root span id, learned from earlier exports (bounded, best effort)
        self._roots: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def media(request: Request) -> str | None:
        content_type = request.headers.get("content-type", "").lower()
        if "protobuf" in content_type:
            return PROTOBUF
        if "json" in content_type:
            return JSON
        return None

    def error(
        self, media: str, status: int, message: str, retry_after: float | None = None
    ) -> Response:
        headers = {"Retry-After": str(max(1, int(retry_after)))} if retry_after else None
        return Response(
            _status_body(media, _grpc_code(status), message),
            status_code=status,
            media_type=media,
            headers=headers,
        )

    def traces(self, spans: list[Any]) -> tuple[list[Trace], list[str]]:
        roots = {s.trace_id: s.span_id for s in spans if not s.parent_id and not s.problem}
        for trace_id, span_id in roots.items():
            self._roots[trace_id] = span_id
            if len(self._roots) > _ROOT_CACHE:
                self._roots.popitem(last=False)
        traces: list[Trace] = []
        problems: list[str] = []
        for span in spans:
            if span.problem:
                problems.append(span.problem)
                continue
            trace = span_to_trace(span, roots.get(span.trace_id) or self._roots.get(span.trace_id))
            if issues := check_trace(trace):
                problems.append(f"span {span.span_id}: {issues[0][0]} {issues[0][1]}")
                continue
            traces.append(trace)
        return traces, problems

    def convert(self, body: bytes, media: str) -> tuple[list[Trace], list[str]]:
        """Body → accepted Traces and the problems of the rejected spans. The cyclic GC
        is paused meanwhile: a 500-span body allocates some 50,000 acyclic objects, which
        set off dozens of collections that find nothing (about 10% of the receiver's
        time). Nothing awaits in here, so no other request runs with the GC paused."""
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            spans = decode_protobuf(body) if media == PROTOBUF else decode_json(body)
            return self.traces(spans)
        finally:
            if paused:
                gc.enable()

    async def handle(self, request: Request, customer_id: str) -> Response:
        media = self.media(request)
        if media is None:
            return self.error(
                PROTOBUF, 415, "Content-Type must be application/x-protobuf or application/json"
            )
        try:
            body = await read_body(request, self.max_body_bytes)
        except IngestError as exc:
            return self.error(media, exc.status, exc.message)
        try:
            traces, problems = self.convert(body, media)
        except MalformedOtlp as exc:
            return self.error(media, 400, str(exc))
        if traces:
            try:
                await self.sink.submit(traces, customer_id)
            except QueueFull as exc:
                return self.error(media, 503, str(exc), exc.retry_after)
            except QueueUnavailable as exc:
                return self.error(media, 503, str(exc), 5)
        return self.success(media, len(problems), problems)

    @staticmethod
    def success(media: str, rejected: int, problems: list[str]) -> Response:
        message = "; ".join(problems[:5]) + (
            f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        )
        if media == JSON:
            body: dict[str, Any] = {}
            if rejected:
                body["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": message}
            return Response(msgspec.json.encode(body), media_type=JSON)
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
            )
        return Response(response.SerializeToString(), media_type=PROTOBUF)
