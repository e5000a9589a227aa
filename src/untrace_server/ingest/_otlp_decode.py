"""OTLP ``ExportTraceServiceRequest`` bodies (protobuf or OTLP/JSON) → flat ``SpanData``.

A body that cannot be read as a whole raises ``MalformedOtlp`` (the receiver answers
400). Per-span problems (a missing or malformed trace/span id) do not fail the request:
the span comes back with ``problem`` set, and the receiver reports it as rejected in
the partial-success response.

OTLP/JSON per the spec: hex ids (base64 accepted too, as the plain proto3 JSON mapping
would write them), integer enums, 64-bit integers as strings or numbers.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import msgspec
from google.protobuf.message import DecodeError

from untrace_server.ingest._otlp_wire import ExportRequest, any_value

__all__ = ["MalformedOtlp", "SpanData", "decode_json", "decode_protobuf"]

_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class MalformedOtlp(ValueError):
    pass


@dataclass(slots=True)
class SpanData:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_ns: int
    end_ns: int
    attrs: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    status_code: int = 0
    status_message: str = ""
    scope: str = ""
    problem: str | None = None


def _pb_attrs(attributes: Any) -> dict[str, Any]:
    """A ``map<string, bytes>`` of encoded ``AnyValue``s (see ``_otlp_wire``) as a dict."""
    return {key: any_value(attributes[key]) for key in attributes}


def _check_ids(span: SpanData) -> None:
    if len(span.trace_id) != 32 or span.trace_id == _ZERO_TRACE:
        span.problem = "invalid or missing traceId"
    elif len(span.span_id) != 16 or span.span_id == _ZERO_SPAN:
        span.problem = "invalid or missing spanId"
    elif span.parent_id and len(span.parent_id) != 16:
        span.problem = "invalid parentSpanId"


def decode_protobuf(body: bytes) -> list[SpanData]:
    try:
        return _walk_protobuf(ExportRequest.FromString(body))
    except (DecodeError, UnicodeDecodeError) as exc:
        raise MalformedOtlp(f"body is not a valid ExportTraceServiceRequest: {exc}") from None


def _walk_protobuf(request: Any) -> list[SpanData]:
    out: list[SpanData] = []
    for rs in request.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for s in ss.spans:
                span = SpanData(
                    trace_id=s.trace_id.hex(),
                    span_id=s.span_id.hex(),
                    parent_id=s.parent_span_id.hex(),
                    name=s.name,
                    start_ns=s.start_time_unix_nano,
                    end_ns=s.end_time_unix_nano,
                    attrs=_pb_attrs(s.attributes),
                    resource=resource,
                    events=[(e.name, e.time_unix_nano, _pb_attrs(e.attributes)) for e in s.events],
                    status_code=s.status.code,
                    status_message=s.status.message,
                    scope=scope,
                )
                _check_ids(span)
                out.append(span)
    return out


def _json_id(value: Any, size: int) -> str:
    if not value:
        return ""
    if not isinstance(value, str):
        raise MalformedOtlp("ids must be strings")
    if len(value) == size * 2:
        try:
            bytes.fromhex(value)
            return value.lower()
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "?"
    return raw.hex() if len(raw) == size else "?"


def _json_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return None
    for key, raw in v.items():
        if key == "stringValue":
            return raw
        if key == "intValue":
            return int(raw)
        if key == "doubleValue":
            return float(raw)
        if key == "boolValue":
            return bool(raw)
        if key == "arrayValue":
            return [_json_value(x) for x in _list(raw.get("values"), "arrayValue.values")]
        if key == "kvlistValue":
            return _json_attrs(raw.get("values"))
        if key == "bytesValue":
            return raw
    return None


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedOtlp(f"{what} must be an array")
    return value


def _json_attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in _list(kvs, "attributes"):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise MalformedOtlp("attributes must be a list of {key, value}")
        out[kv["key"]] = _json_value(kv.get("value"))
    return out


def _obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedOtlp(f"{what} must be an object")
    return value


def decode_json(body: bytes) -> list[SpanData]:
    try:
        top = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedOtlp(f"malformed JSON: {exc}") from None
    try:
        return _walk_json(_obj(top, "body"))
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, MalformedOtlp):
            raise
        raise MalformedOtlp(f"not an OTLP/JSON ExportTraceServiceRequest: {exc}") from None


def _walk_json(top: dict[str, Any]) -> list[SpanData]:
    out: list[SpanData] = []
    for rs in _list(top.get("resourceSpans"), "resourceSpans"):
        rs = _obj(rs, "resourceSpans[]")
        resource = _json_attrs(_obj(rs.get("resource"), "resource").get("attributes"))
        for ss in _list(rs.get("scopeSpans"), "scopeSpans"):
            ss = _obj(ss, "scopeSpans[]")
            scope = str(_obj(ss.get("scope"), "scope").get("name", ""))
            for s in _list(ss.get("spans"), "spans"):
                s = _obj(s, "spans[]")
                status = _obj(s.get("status"), "status")
                span = SpanData(
                    trace_id=_json_id(s.get("traceId"), 16),
                    span_id=_json_id(s.get("spanId"), 8),
                    parent_id=_json_id(s.get("parentSpanId"), 8),
                    name=str(s.get("name", "")),
                    start_ns=int(s.get("startTimeUnixNano") or 0),
                    end_ns=int(s.get("endTimeUnixNano") or 0),
                    attrs=_json_attrs(s.get("attributes")),
                    resource=resource,
                    events=[
                        (
                            str(e.get("name", "")),
                            int(e.get("timeUnixNano") or 0),
                            _json_attrs(e.get("attributes")),
                        )
                        for e in (_obj(x, "events[]") for x in _list(s.get("events"), "events"))
                    ],
                    status_code=int(status.get("code") or 0),
                    status_message=str(status.get("message", "")),
                    scope=scope,
                )
                _check_ids(span)
                out.append(span)
    return out
