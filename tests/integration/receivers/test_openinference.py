"""The OpenInference OpenAI instrumentor (what Phoenix users run) exporting through the
OTel SDK to Untrace, with the openai SDK calling a local mock upstream."""

from __future__ import annotations

import uuid

import openai
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from tests.integration.receivers.conftest import Recorder
from tests.integration.receivers.mock_openai import MODEL, MockOpenAI


def test_openinference_openai_call_under_a_chain(
    recorder: Recorder, mock_openai: MockOpenAI
) -> None:
    tp = TracerProvider()
    tp.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(
                endpoint=recorder.url + "/v1/traces", headers={"x-untrace-key": recorder.key}
            )
        )
    )
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tp)
    marker = str(uuid.uuid4())
    try:
        with (
            openai.OpenAI(api_key="sk-test", base_url=mock_openai.base_url) as client,
            tp.get_tracer("app").start_as_current_span("pipeline") as root,
        ):
            root.set_attribute("openinference.span.kind", "CHAIN")
            root.set_attribute("session.id", marker)
            client.chat.completions.create(
                model="gpt-4o-mini",
                max_tokens=20,
                messages=[{"role": "user", "content": "ping"}],
            )
    finally:
        instrumentor.uninstrument()
        tp.shutdown()
    otel_trace = format(root.get_span_context().trace_id, "032x")
    traces = recorder.wait_for(lambda t: t["metadata"].get("otelTraceId") == otel_trace, 2)
    chain = next(t for t in traces if t["name"] == "pipeline")
    llm = next(t for t in traces if t is not chain)
    assert chain["kind"] == "chain" and chain["sessionId"] == marker
    assert llm.get("kind", "llm") == "llm" and llm["parentId"] == chain["id"]
    # one export (BatchSpanProcessor) holds the root too, so the child knows its root
    assert llm["metadata"]["rootId"] == chain["id"]
    assert llm["model"] == MODEL and llm["provider"] == "openai"
    assert llm["request"]["messages"] == [{"role": "user", "content": "ping"}]
    assert llm["request"]["parameters"]["max_tokens"] == 20
    assert llm["response"]["messages"] == [{"role": "assistant", "content": "echo: ping"}]
    assert llm["response"]["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 4,
        "total_tokens": 13,
    }
