"""``OtlpHandler.convert`` pauses the cyclic GC only while it runs: it is back on after a
good body and after a malformed one, and it stays off when it was off."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from untrace_server.ingest._otlp_decode import MalformedOtlp
from untrace_server.ingest._otlp_http import JSON, PROTOBUF, OtlpHandler
from untrace_server.ingest.base import TraceSink


@pytest.fixture
def handler() -> Iterator[OtlpHandler]:
    was = gc.isenabled()
    yield OtlpHandler(TraceSink(queue=None), 1 << 20)  # type: ignore[arg-type]
    (gc.enable if was else gc.disable)()


def _body(*spans: Span) -> bytes:
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])]
    )
    return request.SerializeToString()


def test_convert_maps_spans_and_turns_the_gc_back_on(handler: OtlpHandler) -> None:
    gc.enable()
    good = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="root")
    bad = Span(trace_id=b"\x01" * 16, span_id=b"", name="no id")
    traces, problems = handler.convert(_body(good, bad), PROTOBUF)
    assert [t.id for t in traces] == ["02" * 8] and traces[0].name == "root"
    assert problems == ["invalid or missing spanId"]
    assert gc.isenabled()


@pytest.mark.parametrize(("body", "media"), [(b"\xff\xff\xff", PROTOBUF), (b"{", JSON)])
def test_a_malformed_body_turns_the_gc_back_on(
    handler: OtlpHandler, body: bytes, media: str
) -> None:
    gc.enable()
    with pytest.raises(MalformedOtlp):
        handler.convert(body, media)
    assert gc.isenabled()


def test_convert_leaves_a_disabled_gc_disabled(handler: OtlpHandler) -> None:
    gc.disable()
    handler.convert(_body(Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)), PROTOBUF)
    assert not gc.isenabled()
