"""The OpenTelemetry SDK's own OTLP/HTTP exporter, pointed at Untrace: GenAI spans in
current and deprecated names, a chain → tool → llm tree, gzip, auth headers."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from tests.integration.receivers.conftest import Recorder, by_meta


def provider(recorder: Recorder, headers: dict[str, str], **kw: object) -> TracerProvider:
    tp = TracerProvider(
        resource=Resource.create(
            {"service.name": "otel-app", "deployment.environment.name": "test"}
        )
    )
    exporter = OTLPSpanExporter(endpoint=recorder.url + "/v1/traces", headers=headers, **kw)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp


def test_genai_tree_through_sdk_exporter(recorder: Recorder) -> None:
    tp = provider(recorder, {"x-untrace-key": recorder.key}, compression=Compression.Gzip)
    tracer = tp.get_tracer("test")
    session = f"s-{uuid.uuid4()}"
    with tracer.start_as_current_span("agent run") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        root.set_attribute("session.id", session)
        with tracer.start_as_current_span("execute_tool search") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.call.arguments", '{"q": "x"}')
            with tracer.start_as_current_span("chat gpt-4o-mini") as llm:
                llm.set_attribute("gen_ai.operation.name", "chat")
                llm.set_attribute("gen_ai.provider.name", "openai")
                llm.set_attribute("gen_ai.request.model", "gpt-4o-mini")
                llm.set_attribute("gen_ai.request.temperature", 0.3)
                llm.set_attribute("gen_ai.usage.input_tokens", 11)
                llm.set_attribute("gen_ai.usage.output_tokens", 7)
                llm.set_attribute("gen_ai.conversation.id", session)
                llm.set_attribute("gen_ai.response.finish_reasons", ["stop"])
                llm.set_attribute(
                    "gen_ai.system_instructions",
                    json.dumps([{"type": "text", "content": "Be brief."}]),
                )
                llm.set_attribute(
                    "gen_ai.input.messages",
                    json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]),
                )
                llm.set_attribute(
                    "gen_ai.output.messages",
                    json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [{"type": "text", "content": "Hello!"}],
                                "finish_reason": "stop",
                            }
                        ]
                    ),
                )
    tp.shutdown()
    otel_trace = format(root.get_span_context().trace_id, "032x")
    traces = {t["name"]: t for t in recorder.wait_for(by_meta("otelTraceId", otel_trace), 3)}
    agent, tool_t, chat = (
        traces["agent run"],
        traces["execute_tool search"],
        traces["chat gpt-4o-mini"],
    )
    assert agent["kind"] == "agent" and "parentId" not in agent
    assert tool_t["kind"] == "tool" and tool_t["parentId"] == agent["id"]
    assert chat["parentId"] == tool_t["id"]
    assert agent["id"] == format(root.get_span_context().span_id, "016x")
    # the root came in a separate export after its children; known roots are stamped
    assert agent["metadata"]["rootId"] == agent["id"]
    assert chat.get("kind", "llm") == "llm" and chat["provider"] == "openai"
    assert chat["model"] == "gpt-4o-mini"
    assert chat["sessionId"] == session
    assert chat["request"]["parameters"] == {"temperature": 0.3}
    assert chat["request"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert chat["response"]["messages"] == [{"role": "assistant", "content": "Hello!"}]
    assert chat["response"]["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
    }
    assert chat["response"]["finish_reason"] == "stop"
    assert chat["metadata"]["applicationId"] == "otel-app"
    assert chat["metadata"]["environment"] == "test"
    assert chat["metadata"]["customerId"] == "default"


def test_deprecated_names_events_and_errors(recorder: Recorder) -> None:
    tp = provider(recorder, {"Authorization": f"Bearer {recorder.key}"})
    tracer = tp.get_tracer("test")
    with tracer.start_as_current_span("openai.chat") as span:
        span.set_attribute("gen_ai.system", "OpenAI")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.set_attribute("gen_ai.usage.prompt_tokens", 5)
        span.set_attribute("gen_ai.usage.completion_tokens", 2)
        span.set_attribute("gen_ai.prompt.0.role", "user")
        span.set_attribute("gen_ai.prompt.0.content", "What is 2+2?")
        span.set_attribute("gen_ai.completion.0.role", "assistant")
        span.set_attribute("gen_ai.completion.0.content", "4")
        span.set_attribute("gen_ai.completion.0.finish_reason", "stop")
    with tracer.start_as_current_span("chat claude") as events_span:
        events_span.set_attribute("gen_ai.system", "anthropic")
        events_span.set_attribute("gen_ai.request.model", "claude-3-5-haiku")
        events_span.add_event("gen_ai.system.message", {"content": "Be kind."})
        events_span.add_event("gen_ai.user.message", {"content": "Hello?"})
        events_span.add_event(
            "gen_ai.choice", {"message": json.dumps({"role": "assistant", "content": "Hi there"})}
        )
        try:
            raise TimeoutError("upstream timed out")
        except TimeoutError as exc:
            events_span.record_exception(exc)
            events_span.set_status(Status(StatusCode.ERROR, "upstream timed out"))
    tp.shutdown()
    ids = {format(s.get_span_context().trace_id, "032x") for s in (span, events_span)}
    traces = recorder.wait_for(lambda t: t["metadata"].get("otelTraceId") in ids, 2)
    old = next(t for t in traces if t["name"] == "openai.chat")
    assert old["provider"] == "openai" and old["model"] == "gpt-4o"
    assert old["response"]["usage"]["total_tokens"] == 7
    assert old["request"]["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    assert old["response"]["messages"] == [{"role": "assistant", "content": "4"}]
    assert old["response"]["finish_reason"] == "stop"
    ev = next(t for t in traces if t["name"] == "chat claude")
    assert ev["provider"] == "anthropic"
    assert ev["request"]["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hello?"},
    ]
    assert ev["response"]["messages"] == [{"role": "assistant", "content": "Hi there"}]
    assert ev["error"]["type"] == "TimeoutError"
    assert ev["error"]["message"] == "upstream timed out"
    assert "TimeoutError" in ev["error"]["stack"]


@pytest.mark.parametrize("headers", [{}, {"x-untrace-key": "utk_wrong"}])
def test_exporter_without_a_valid_key_is_refused(
    recorder: Recorder, headers: dict[str, str]
) -> None:
    response = httpx.post(
        recorder.url + "/v1/traces",
        content=b"",
        headers={"Content-Type": "application/x-protobuf", **headers},
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/x-protobuf"
