"""The lean OTLP schema (``_otlp_wire``) reads what the generated OTel protos read: every
``AnyValue`` shape, byte for byte, and whole requests with repeated keys, events,
status and unknown fields; invalid UTF-8 is a malformed body as before."""

from __future__ import annotations

import random

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from untrace_server.ingest._otlp_decode import MalformedOtlp, decode_protobuf
from untrace_server.ingest._otlp_wire import any_value, pb_value

INTS = [0, 1, 127, 128, 300, 16_383, 16_384, 2**31, 2**63 - 1, -1, -300, -(2**63)]
TEXTS = ["", "a", "é" * 70, "x" * 127, "x" * 128, "x" * 16_383, "x" * 16_384, "x" * 70_000]
VALUES = [
    *(AnyValue(int_value=i) for i in INTS),
    *(AnyValue(string_value=t) for t in TEXTS),
    *(AnyValue(double_value=d) for d in (0.0, -1.5, 1e300, float("inf"))),
    AnyValue(bool_value=True),
    AnyValue(bool_value=False),
    AnyValue(),
    AnyValue(bytes_value=b"\x00\x01\xff"),
    AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=3), AnyValue(string_value="s")])),
    AnyValue(
        kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(double_value=2.5))])
    ),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: str(v.WhichOneof("value")))
def test_any_value_reads_what_the_generated_proto_reads(value: AnyValue) -> None:
    assert any_value(value.SerializeToString()) == pb_value(value)


def test_any_value_reads_random_64_bit_ints() -> None:
    rng = random.Random(6)
    for _ in range(2_000):
        number = rng.randint(-(2**63), 2**63 - 1)
        assert any_value(AnyValue(int_value=number).SerializeToString()) == number


def test_any_value_takes_the_last_of_repeated_oneof_fields() -> None:
    raw = AnyValue(int_value=7).SerializeToString() + AnyValue(string_value="x").SerializeToString()
    assert any_value(raw) == "x"


def _kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))  # type: ignore[arg-type]


def test_a_request_decodes_as_with_the_generated_protos() -> None:
    span = Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(1, 9)),
        parent_span_id=bytes(range(2, 10)),
        name="chat",
        kind=Span.SPAN_KIND_CLIENT,  # not read: an unknown field to the lean schema
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_001_000_000_000,
        attributes=[_kv("a", int_value=1), _kv("b", string_value="x"), _kv("a", int_value=2)],
        events=[
            Span.Event(name="exception", time_unix_nano=5, attributes=[_kv("m", bool_value=True)])
        ],
        status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
    )
    body = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[_kv("service.name", string_value="svc")]),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name="lib"), spans=[span])],
            )
        ]
    ).SerializeToString()
    [decoded] = decode_protobuf(body)
    assert (decoded.trace_id, decoded.span_id, decoded.parent_id) == (
        bytes(range(16)).hex(),
        bytes(range(1, 9)).hex(),
        bytes(range(2, 10)).hex(),
    )
    assert decoded.name == "chat" and decoded.scope == "lib" and decoded.problem is None
    assert (decoded.start_ns, decoded.end_ns) == (
        span.start_time_unix_nano,
        span.end_time_unix_nano,
    )
    assert decoded.attrs == {"a": 2, "b": "x"}  # a repeated key keeps its last value
    assert decoded.resource == {"service.name": "svc"}
    assert decoded.events == [("exception", 5, {"m": True})]
    assert (decoded.status_code, decoded.status_message) == (2, "boom")


def test_invalid_utf8_in_a_value_is_a_malformed_body() -> None:
    good = Span(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, attributes=[_kv("k", string_value="ok")]
    )
    body = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[good])])]
    ).SerializeToString()
    broken = body.replace(b"\x0a\x02ok", b"\x0a\x02\xff\xfe")
    assert broken != body
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(broken)  # what the generated protos do
    with pytest.raises(MalformedOtlp):
        decode_protobuf(broken)
