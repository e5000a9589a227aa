"""Payload fidelity: each connector's output checked against the platform's published
schema or official SDK types (opentelemetry-proto, langsmith.schemas) and the wire
formats in the reference (hex OTLP/JSON ids, langfuse.* attributes, 207 handling,
Helicone's 200-with-error, Datadog's 24 h limit)."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from untrace_server.destinations._ids import run_uuid, span_id, trace_id
from untrace_server.destinations._view import TRUNCATION_MARK
from untrace_server.destinations.base import DestinationContext
from untrace_server.destinations.datadog import DatadogDestination
from untrace_server.destinations.helicone import HeliconeDestination
from untrace_server.destinations.langfuse import LangfuseDestination
from untrace_server.destinations.langsmith import LangsmithDestination
from untrace_server.destinations.otlp import OtlpDestination
from untrace_server.errors import PartialDeliveryError, PermanentError, RetryableError
from untrace_server.model import Message, Request, Response, Trace, Usage, now_ms

CONTEXT = DestinationContext(destination_id="d-1", customer_id="c-1")
START = now_ms() - 10_000


def tree() -> list[Trace]:
    root = Trace(
        id="root-1",
        start_time=START,
        end_time=START + 2000,
        kind="chain",
        name="pipeline",
        session_id="sess-9",
        request=Request(prompt="q"),
        response=Response(content="a"),
        metadata={"userId": "u-1", "environment": "prod", "tags": {"team": "x"}, "plan": "pro"},
    )
    child = Trace(
        id="child-1",
        parent_id="root-1",
        start_time=START + 10,
        end_time=START + 900,
        provider="openai",
        model="gpt-4o-mini",
        session_id="sess-9",
        request=Request(
            messages=[Message(role="system", content="sys"), Message(role="user", content="Hi")],
            parameters={"temperature": 0.3, "max_tokens": 64},
        ),
        response=Response(
            content="Hello!",
            finish_reason="stop",
            usage=Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7, cached_tokens=1),
        ),
    )
    grandchild = Trace(
        id="gc-1",
        parent_id="child-1",
        start_time=START + 20,
        end_time=START + 30,
        kind="tool",
        name="lookup",
    )
    return [root, child, grandchild]


class Capture:
    def __init__(self, *answers: httpx.Response) -> None:
        self.requests: list[httpx.Request] = []
        self.answers = list(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0) if self.answers else httpx.Response(200, json={})

    def body(self, i: int = 0) -> bytes:
        request = self.requests[i]
        raw = request.content
        return gzip.decompress(raw) if request.headers.get("content-encoding") == "gzip" else raw


async def run(cls: type[Any], config: dict[str, Any], traces: list[Trace], capture: Capture) -> Any:
    destination = cls(
        cls.Config.model_validate(config), CONTEXT, transport=httpx.MockTransport(capture)
    )
    await destination.start()
    try:
        return await destination.send_batch(traces)
    finally:
        await destination.shutdown()


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = (
            [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
            if kind == "array_value"
            else getattr(value, kind)
        )
    return out


async def test_otlp_protobuf_round_trips_through_opentelemetry_proto() -> None:
    capture = Capture()
    await run(
        OtlpDestination,
        {"endpoint": "http://collector:4318", "headers": {"x-h": "1"}},
        tree(),
        capture,
    )
    request = capture.requests[0]
    assert request.url.path == "/v1/traces"
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.headers["x-h"] == "1"
    decoded = ExportTraceServiceRequest.FromString(capture.body())
    spans = {s.name: s for rs in decoded.resource_spans for ss in rs.scope_spans for s in ss.spans}
    root, child, grandchild = spans["pipeline"], spans["chat gpt-4o-mini"], spans["lookup"]
    assert {s.trace_id for s in spans.values()} == {trace_id("root-1")}
    assert child.parent_span_id == root.span_id == span_id("root-1")
    assert grandchild.parent_span_id == child.span_id
    a = attrs(child)
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.temperature"] == 0.3
    assert a["gen_ai.usage.input_tokens"] == 5 and a["gen_ai.usage.output_tokens"] == 2
    assert a["gen_ai.usage.cache_read.input_tokens"] == 1
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.conversation.id"] == "sess-9"
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]}
    ]
    assert json.loads(a["gen_ai.system_instructions"]) == [{"type": "text", "content": "sys"}]
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"][0]["content"] == "Hello!"
    assert child.kind == child.SPAN_KIND_CLIENT


async def test_otlp_json_uses_hex_ids_and_integer_enums() -> None:
    capture = Capture()
    await run(
        OtlpDestination,
        {"endpoint": "http://c/v1/traces", "encoding": "json", "compression": "none"},
        tree(),
        capture,
    )
    body = json.loads(capture.body())
    spans = [sp for rs in body["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]
    (span,) = [sp for sp in spans if sp["name"] == "chat gpt-4o-mini"]
    assert span["traceId"] == trace_id("root-1").hex() and len(span["traceId"]) == 32
    assert span["parentSpanId"] == span_id("root-1").hex() and len(span["spanId"]) == 16
    assert span["kind"] == 3 and span["status"]["code"] == 1
    assert isinstance(span["startTimeUnixNano"], str)


async def test_oversized_field_is_truncated_and_marked_not_dropped() -> None:
    big = tree()[1]
    big.response.content = "x" * 5000
    capture = Capture()
    await run(OtlpDestination, {"endpoint": "http://c", "max_field_bytes": 1000}, [big], capture)
    (span,) = (
        ExportTraceServiceRequest.FromString(capture.body()).resource_spans[0].scope_spans[0].spans
    )
    a = attrs(span)
    assert a["gen_ai.output.messages"].endswith(TRUNCATION_MARK)
    assert len(a["gen_ai.output.messages"].encode()) <= 1000
    assert "gen_ai.output.messages" in a["untrace.truncated"]


def test_langsmith_runs_validate_against_the_sdk_schema() -> None:
    from langsmith import schemas
    from langsmith.run_trees import _parse_dotted_order
    from pydantic import TypeAdapter

    from untrace_server.destinations._ids import lineage
    from untrace_server.destinations.langsmith import run

    traces = tree()
    runs = {r["name"]: r for r in (run(t, lineage(traces), "proj", 10_000) for t in traces)}
    for body in runs.values():
        schemas.Run.model_validate(body)  # the SDK's own run model
        assert body["session_name"] == "proj"
        assert body["trace_id"] == str(run_uuid("root-1"))
        order = _parse_dotted_order(body["dotted_order"])
        assert str(order[-1][1]) == body["id"] and str(order[0][1]) == body["trace_id"]
    llm = runs["gpt-4o-mini"]
    assert llm["run_type"] == "llm"
    assert llm["parent_run_id"] == runs["pipeline"]["id"] == str(run_uuid("root-1"))
    assert runs["pipeline"]["dotted_order"] + "." in llm["dotted_order"]
    assert runs["lookup"]["dotted_order"].startswith(llm["dotted_order"] + ".")
    usage = llm["extra"]["metadata"]["usage_metadata"]
    TypeAdapter(schemas.UsageMetadata).validate_python(usage)
    assert usage == {
        "input_tokens": 5,
        "output_tokens": 2,
        "total_tokens": 7,
        "input_token_details": {"cache_read": 1},
    }
    assert llm["extra"]["metadata"]["ls_model_name"] == "gpt-4o-mini"
    assert llm["extra"]["metadata"]["thread_id"] == "sess-9"
    assert llm["outputs"]["choices"][0]["message"]["content"] == "Hello!"


@pytest.mark.parametrize("api", ["batch", "multipart"])
async def test_langsmith_409_is_success_and_regions(api: str) -> None:
    capture = Capture(httpx.Response(409, json={"detail": "exists"}))
    result = await run(
        LangsmithDestination, {"api_key": "k", "region": "eu", "api": api}, tree(), capture
    )
    assert result.delivered == 3
    request = capture.requests[0]
    assert request.url.host == "eu.api.smith.langchain.com"
    assert request.url.path == f"/runs/{api}" and request.headers["x-api-key"] == "k"
    if api == "multipart":
        assert b'name="post.' + str(run_uuid("child-1")).encode() + b'.inputs"' in request.content
        assert b"Content-Length: " in request.content


async def test_langsmith_multipart_404_falls_back_to_batch() -> None:
    capture = Capture(httpx.Response(404))
    await run(
        LangsmithDestination,
        {"api_key": "k", "endpoint": "https://ls.corp/api/v1", "api": "multipart"},
        tree(),
        capture,
    )
    assert [r.url.path for r in capture.requests] == [
        "/api/v1/runs/multipart",
        "/api/v1/runs/batch",
    ]
    assert len(json.loads(capture.body(1))["post"]) == 3


async def test_langfuse_otel_headers_and_langfuse_attributes() -> None:
    capture = Capture()
    await run(
        LangfuseDestination,
        {"public_key": "pk", "secret_key": "sk", "region": "us"},
        tree(),
        capture,
    )
    request = capture.requests[0]
    assert str(request.url) == "https://us.cloud.langfuse.com/api/public/otel/v1/traces"
    assert request.headers["x-langfuse-ingestion-version"] == "4"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"pk:sk").decode()
    decoded = ExportTraceServiceRequest.FromString(capture.body())
    spans = {s.name: attrs(s) for s in decoded.resource_spans[0].scope_spans[0].spans}
    gen, root = spans["chat gpt-4o-mini"], spans["pipeline"]
    assert gen["langfuse.observation.type"] == "generation"
    assert json.loads(gen["langfuse.observation.usage_details"]) == {
        "input": 5,
        "output": 2,
        "total": 7,
    }
    assert json.loads(gen["langfuse.observation.input"])[1]["content"] == "Hi"
    assert json.loads(gen["langfuse.observation.output"]) == "Hello!"
    assert gen["langfuse.session.id"] == "sess-9"
    assert root["langfuse.user.id"] == "u-1" and root["langfuse.environment"] == "prod"
    assert root["langfuse.trace.tags"] == ["team:x"]
    assert root["langfuse.trace.name"] == "pipeline"
    assert root["langfuse.observation.metadata.plan"] == "pro"


async def test_langfuse_legacy_207_retries_only_failed_events() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)["batch"]
        assert {e["type"] for e in batch} >= {"trace-create", "generation-create", "chain-create"}
        bad = [e for e in batch if e["body"].get("name") == "lookup"]
        worse = [e for e in batch if e["type"] == "generation-create"]
        return httpx.Response(
            207,
            json={
                "successes": [],
                "errors": [
                    {"id": bad[-1]["id"], "status": 503, "message": "busy"},
                    {"id": worse[0]["id"], "status": 400, "message": "bad"},
                ],
            },
        )

    transport_calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        transport_calls.append(request)
        return answer(request)

    cls = LangfuseDestination
    destination = cls(
        cls.Config.model_validate(
            {"public_key": "pk", "secret_key": "sk", "endpoint": "http://lf", "api": "legacy"}
        ),
        CONTEXT,
        transport=httpx.MockTransport(handler),
    )
    await destination.start()
    try:
        with pytest.raises(PartialDeliveryError) as info:
            await destination.send_batch(tree())
    finally:
        await destination.shutdown()
    assert set(info.value.failed) == {1, 2}
    assert isinstance(info.value.failed[1], PermanentError)
    assert isinstance(info.value.failed[2], RetryableError)
    assert transport_calls[0].url.path == "/api/public/ingestion"


async def test_helicone_meta_and_200_with_error_is_a_failure() -> None:
    capture = Capture(
        httpx.Response(200, text="ok"), httpx.Response(200, json={"error": "storage failed"})
    )
    destination_config = {"api_key": "hk", "endpoint": "http://h", "concurrency": 1}
    with pytest.raises(PartialDeliveryError) as info:
        await run(HeliconeDestination, destination_config, tree()[:2], capture)
    assert list(info.value.failed) == [1]
    assert isinstance(info.value.failed[1], RetryableError)
    body = json.loads(capture.body(1))
    meta = body["providerRequest"]["meta"]
    assert meta["Helicone-Session-Id"] == "sess-9"
    assert meta["Helicone-Session-Path"] == "/root-1/child-1"
    assert body["providerResponse"]["json"]["usage"]["total_tokens"] == 7
    assert body["timing"]["startTime"] == {
        "seconds": (START + 10) // 1000,
        "milliseconds": (START + 10) % 1000,
    }
    assert capture.requests[0].url.path == "/custom/v1/log"
    assert json.loads(capture.body(0))["providerRequest"]["meta"]["Helicone-User-Id"] == "u-1"


async def test_datadog_spans_and_24h_limit() -> None:
    old = Trace(
        id="old", start_time=now_ms() - 25 * 3600_000, end_time=now_ms() - 25 * 3600_000 + 5
    )
    capture = Capture(httpx.Response(202))
    with pytest.raises(PartialDeliveryError) as info:
        await run(
            DatadogDestination,
            {"api_key": "dd", "ml_app": "bot", "site": "datadoghq.eu"},
            [*tree()[:2], old],
            capture,
        )
    assert list(info.value.failed) == [2]
    assert "older than 24 h" in str(info.value.failed[2])
    request = capture.requests[0]
    assert str(request.url) == "https://api.datadoghq.eu/api/intake/llm-obs/v1/trace/spans"
    assert request.headers["dd-api-key"] == "dd"
    attributes = json.loads(capture.body())["data"]["attributes"]
    assert attributes["ml_app"] == "bot"
    root, child = attributes["spans"]
    assert root["parent_id"] == "undefined" and child["parent_id"] == root["span_id"]
    assert root["trace_id"] == child["trace_id"] == trace_id("root-1").hex()
    assert child["meta"]["kind"] == "llm" and child["meta"]["metadata"]["model_name"]
    assert child["metrics"] == {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}
    assert child["session_id"] == "sess-9" and isinstance(child["start_ns"], int)
