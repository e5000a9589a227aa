"""OTLP/HTTP wire semantics at ``/v1/traces``: OTLP/JSON with hex ids, gzip, partial
success for rejected spans, 400 for malformed bodies, 415, 503 + Retry-After when the
queue budget is used up."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, wait_until
from tests.support.sink import WebhookSink

TRACE = "5b8efff798038103d269b633813fc60c"


def _span(span_id: str, parent: str = "", **attrs: Any) -> dict[str, Any]:
    values = [
        {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
        for k, v in attrs.items()
    ]
    span: dict[str, Any] = {
        "traceId": TRACE,
        "spanId": span_id,
        "name": f"span {span_id}",
        "kind": 3,
        "startTimeUnixNano": "1735732800000000000",
        "endTimeUnixNano": "1735732801250000000",
        "attributes": values,
        "status": {"code": 1},
    }
    if parent:
        span["parentSpanId"] = parent
    return span


def _body(*spans: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "json-app"}}]
                },
                "scopeSpans": [{"scope": {"name": "manual"}, "spans": list(spans)}],
            }
        ]
    }


def test_otlp_json_partial_success_and_errors(
    server_factory: Callable[..., ServerProcess], sink_factory: Callable[..., WebhookSink]
) -> None:
    sink = sink_factory()
    server = server_factory(webhook_config(("hook", sink))).start()
    url = server.url + "/v1/traces"
    headers = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
    body = _body(
        _span(
            "eee19b7ec3c1b174",
            **{
                "openinference.span.kind": "CHAIN",
                "input.value": "question?",
                "output.value": "answer",
            },
        ),
        _span(
            "aaa19b7ec3c1b175",
            "eee19b7ec3c1b174",
            **{
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini",
                "llm.provider": "openai",
                "llm.token_count.prompt": 5,
                "llm.token_count.completion": 2,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "Hi",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "Hello!",
                "llm.invocation_parameters": '{"temperature": 0.2}',
            },
        ),
        {**_span("bbb19b7ec3c1b176"), "spanId": "zz"},  # malformed id: rejected alone
    )
    response = httpx.post(
        url,
        content=gzip.compress(json.dumps(body).encode()),
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "spanId" in partial["errorMessage"]
    assert wait_until(lambda: len(sink.ids()) >= 2, 10), server.log()
    traces = {t["id"]: t for d in sink.deliveries for t in d.traces}
    chain, llm = traces["eee19b7ec3c1b174"], traces["aaa19b7ec3c1b175"]
    assert chain["kind"] == "chain" and chain["request"]["prompt"] == "question?"
    assert chain["response"]["content"] == "answer"
    assert llm["parentId"] == chain["id"] and llm["metadata"]["rootId"] == chain["id"]
    assert llm["metadata"]["otelTraceId"] == TRACE
    assert llm["model"] == "gpt-4o-mini" and llm["request"]["parameters"] == {"temperature": 0.2}
    assert llm["request"]["messages"] == [{"role": "user", "content": "Hi"}]
    assert llm["response"]["messages"] == [{"role": "assistant", "content": "Hello!"}]
    assert llm["response"]["usage"]["total_tokens"] == 7
    assert llm["endTime"] - llm["startTime"] == 1250

    malformed = httpx.post(url, content=b'{"resourceSpans": {}}', headers=headers)
    assert malformed.status_code == 400 and "resourceSpans" in malformed.json()["message"]
    not_proto = httpx.post(
        url, content=b"\xff\xff\xff", headers={**headers, "Content-Type": "application/x-protobuf"}
    )
    assert not_proto.status_code == 400
    assert not_proto.headers["content-type"] == "application/x-protobuf"
    assert (
        httpx.post(url, content=b"x", headers={**headers, "Content-Type": "text/plain"}).status_code
        == 415
    )
    empty = httpx.post(
        url,
        content=ExportTraceServiceRequest().SerializeToString(),
        headers={**headers, "Content-Type": "application/x-protobuf"},
    )
    assert empty.status_code == 200
    parsed = ExportTraceServiceResponse.FromString(empty.content)
    assert parsed.partial_success.rejected_spans == 0


def test_otlp_backpressure_answers_503_with_retry_after(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory({"queue": {"budget_bytes": 64}}).start()
    response = httpx.post(
        server.url + "/v1/traces",
        json=_body(_span("eee19b7ec3c1b174")),
        headers={"x-untrace-key": server.key},
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
