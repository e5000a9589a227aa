"""Traces → OTLP ``ExportTraceServiceRequest`` (opentelemetry-proto), as protobuf bytes or
OTLP/JSON (hex ids, integer enums, per the OTLP spec)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from untrace_server.destinations._ids import Lineage, span_id
from untrace_server.destinations._otlp_attrs import operation_name
from untrace_server.destinations._view import Truncator, dumps
from untrace_server.model import Trace

__all__ = ["encode_span", "export_request", "key_values", "to_json"]

Attributes = Callable[[Trace], dict[str, Any]]
ResourceKey = tuple[tuple[str, str], ...]
SCOPE = InstrumentationScope(name="untrace", version="0.1.0")
_MS = 1_000_000


def any_value(value: Any, key: str, truncate: Truncator) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        items = [any_value(v, key, truncate) for v in value if v is not None]
        return AnyValue(array_value=ArrayValue(values=items))
    text = value if isinstance(value, str) else dumps(value)
    return AnyValue(string_value=truncate.text(key, text))


def key_values(attrs: Mapping[str, Any], truncate: Truncator) -> list[KeyValue]:
    return [
        KeyValue(key=k, value=any_value(v, k, truncate)) for k, v in attrs.items() if v is not None
    ]


def span_name(trace: Trace) -> str:
    if trace.name:
        return trace.name
    op = operation_name(trace)
    return f"{op} {trace.model}" if trace.model else op


def encode_span(
    trace: Trace, lineage: Lineage, attributes: Attributes, max_field_bytes: int
) -> Span:
    """One span; strings longer than ``max_field_bytes`` are cut and listed in
    ``untrace.truncated``."""
    truncate = Truncator(max_field_bytes)
    span = Span(
        trace_id=lineage.trace_id(trace),
        span_id=span_id(trace.id),
        name=span_name(trace),
        kind=Span.SPAN_KIND_CLIENT
        if trace.kind in ("llm", "embedding")
        else Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=trace.start_time * _MS,
        end_time_unix_nano=trace.end_time * _MS,
        attributes=key_values(attributes(trace), truncate),
    )
    if trace.parent_id:
        span.parent_span_id = span_id(trace.parent_id)
    if trace.error:
        span.status.CopyFrom(
            Status(
                code=Status.STATUS_CODE_ERROR,
                message=truncate.text("status.message", trace.error.message),
            )
        )
        event = span.events.add(name="exception", time_unix_nano=trace.end_time * _MS)
        event.attributes.extend(
            key_values(
                {
                    "exception.type": trace.error.type,
                    "exception.message": trace.error.message,
                    "exception.stacktrace": trace.error.stack,
                },
                truncate,
            )
        )
    else:
        span.status.code = Status.STATUS_CODE_OK
    if truncate.cut:
        span.attributes.append(
            KeyValue(
                key="untrace.truncated",
                value=AnyValue(
                    array_value=ArrayValue(values=[AnyValue(string_value=k) for k in truncate.cut])
                ),
            )
        )
    return span


def export_request(spans: Sequence[tuple[ResourceKey, Span]]) -> ExportTraceServiceRequest:
    """Group spans under one ResourceSpans per distinct resource."""
    grouped: dict[ResourceKey, list[Span]] = {}
    for key, span in spans:
        grouped.setdefault(key, []).append(span)
    request = ExportTraceServiceRequest()
    no_cut = Truncator(1 << 62)
    for key, members in grouped.items():
        request.resource_spans.append(
            ResourceSpans(
                resource=Resource(attributes=key_values(dict(key), no_cut)),
                scope_spans=[ScopeSpans(scope=SCOPE, spans=members)],
            )
        )
    return request


_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def to_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON: lowerCamelCase keys, integer enums, hex trace and span ids."""
    body = MessageToDict(request, use_integers_for_enums=True)
    _hex_ids(body)
    return json.dumps(body, separators=(",", ":")).encode()
