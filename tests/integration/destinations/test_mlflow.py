"""End to end against a real MLflow tracking server: traces sent through the ``otlp``
connector with the ``mlflow`` preset (OTLP to ``/v1/traces`` with
``x-mlflow-experiment-id``) appear through MLflow's REST API (``/api/3.0/mlflow/traces/*``)
with spans, the parent/child link, model, token usage and input/output; traces that came
in over OTLP keep their original trace and span ids."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from typing import Any

import httpx
import msgspec
import pytest
from tests.integration.destinations.test_phoenix import traces

from untrace_server.destinations._ids import span_id, trace_id
from untrace_server.destinations.base import DestinationContext
from untrace_server.destinations.otlp import OtlpDestination
from untrace_server.model import Message, Request, Response, Trace, Usage

CONTEXT = DestinationContext(destination_id="d-mlflow", customer_id="c-1")
_names = itertools.count()


def renamed(batch: list[Trace], suffix: str) -> list[Trace]:
    """``batch`` with ``-suffix`` on every id: MLflow keys traces by trace id across
    experiments (a known id gets its spans upserted where it already lives), so each test
    sends ids of its own."""
    return [
        msgspec.structs.replace(
            t, id=f"{t.id}-{suffix}", parent_id=t.parent_id and f"{t.parent_id}-{suffix}"
        )
        for t in batch
    ]


def create_experiment(url: str, name: str) -> str:
    """A fresh experiment (MLflow ids are per experiment; each test gets its own)."""
    response = httpx.post(
        f"{url}/api/2.0/mlflow/experiments/create",
        json={"name": f"{name}-{next(_names)}-{time.monotonic_ns()}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["experiment_id"])


def _value(value: dict[str, Any]) -> Any:
    """An OTel ``AnyValue`` in MLflow's proto-JSON form as a Python value (MLflow stores
    attributes as JSON and returns them decoded into kvlists and arrays)."""
    if "string_value" in value:
        return value["string_value"]
    if "int_value" in value:
        return int(value["int_value"])
    if "double_value" in value:
        return float(value["double_value"])
    if "bool_value" in value:
        return bool(value["bool_value"])
    if "array_value" in value:
        return [_value(v) for v in value["array_value"].get("values", [])]
    if "kvlist_value" in value:
        return {kv["key"]: _value(kv["value"]) for kv in value["kvlist_value"].get("values", [])}
    return None


def _hex(raw: str | None) -> str | None:
    return base64.b64decode(raw).hex() if raw else None


def _span(span: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": span["name"],
        "trace_id": _hex(span["trace_id"]),
        "span_id": _hex(span["span_id"]),
        "parent_id": _hex(span.get("parent_span_id")),
        "attributes": {kv["key"]: _value(kv["value"]) for kv in span.get("attributes", [])},
    }


async def fetch_traces(url: str, experiment_id: str, spans: int) -> list[dict[str, Any]]:
    """Every trace of the experiment as ``{"info": trace_info, "spans": [span, …]}``,
    polled until ``spans`` spans in all have arrived."""
    search = {
        "locations": [
            {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
        ],
        "max_results": 100,
    }
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        deadline = time.monotonic() + 30
        while True:  # delivery through Untrace is asynchronous
            found = await client.post("/api/3.0/mlflow/traces/search", json=search)
            assert found.status_code == 200, found.text
            result = []
            for info in found.json().get("traces", []):
                got = await client.get(
                    "/api/3.0/mlflow/traces/get", params={"trace_id": info["trace_id"]}
                )
                assert got.status_code == 200, got.text
                trace = got.json()["trace"]
                result.append(
                    {"info": trace["trace_info"], "spans": [_span(s) for s in trace["spans"]]}
                )
            if sum(len(t["spans"]) for t in result) >= spans:
                return result
            assert time.monotonic() < deadline, f"spans never appeared: {result!r:.1000}"
            await asyncio.sleep(0.3)


async def send(url: str, experiment_id: str, batches: list[list[Trace]], **config: Any) -> None:
    destination = OtlpDestination(
        OtlpDestination.Config.model_validate(
            {"preset": "mlflow", "endpoint": url, "experiment_id": experiment_id, **config}
        ),
        CONTEXT,
    )
    await destination.start()
    try:
        assert (await destination.health_check()).healthy
        for batch in batches:
            result = await destination.send_batch(batch)
            assert result.delivered == len(batch), result
    finally:
        await destination.shutdown()


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_otlp_mlflow_preset_round_trip(mlflow_url: str, encoding: str) -> None:
    experiment = create_experiment(mlflow_url, f"untrace-e2e-{encoding}")
    await send(mlflow_url, experiment, [renamed(traces(), encoding)], encoding=encoding)

    [trace] = await fetch_traces(mlflow_url, experiment, 2)
    info = trace["info"]
    tid = trace_id(f"e2e-root-1-{encoding}").hex()
    assert info["trace_id"] == f"tr-{tid}"
    assert info["state"] == "OK"
    assert info["trace_location"]["mlflow_experiment"]["experiment_id"] == experiment
    meta = info["trace_metadata"]
    assert meta["mlflow.trace.session"] == "sess-42"
    assert meta["mlflow.trace.user"] == "user-7"
    assert '"total_tokens": 17' in meta["mlflow.trace.tokenUsage"]
    # The root's plain prompt and answer are the trace's request and response (as JSON)
    assert info["request_preview"] == '"Where is my order?"'
    assert info["response_preview"] == '"It ships tomorrow."'

    spans = {s["name"]: s for s in trace["spans"]}
    root, child = spans["support-agent"], spans["chat gpt-4o-mini"]
    assert root["trace_id"] == child["trace_id"] == tid
    assert root["span_id"] == span_id(f"e2e-root-1-{encoding}").hex()
    assert root["parent_id"] is None
    assert child["parent_id"] == root["span_id"]

    attrs = root["attributes"]
    assert attrs["mlflow.spanType"] == "AGENT"
    assert attrs["mlflow.spanInputs"] == "Where is my order?"
    assert attrs["mlflow.spanOutputs"] == "It ships tomorrow."

    attrs = child["attributes"]
    assert attrs["mlflow.spanType"] == "CHAT_MODEL"
    assert attrs["mlflow.llm.model"] == "gpt-4o-mini"
    assert attrs["mlflow.llm.provider"] == "openai"
    assert attrs["mlflow.chat.tokenUsage"] == {
        "input_tokens": 12,
        "output_tokens": 5,
        "total_tokens": 17,
    }
    # MLflow reads the GenAI messages as the span's inputs and outputs
    assert attrs["mlflow.spanInputs"] == [
        {"role": "user", "parts": [{"type": "text", "content": "Where is my order?"}]}
    ]
    assert attrs["mlflow.spanOutputs"][0]["parts"] == [
        {"type": "text", "content": "It ships tomorrow."}
    ]
    assert attrs["gen_ai.system_instructions"] == [{"type": "text", "content": "Be brief."}]


OTEL_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTEL_ROOT = "00f067aa0ba902b7"
OTEL_CHILD = "a3ce929d0e0e4736"


def otel_traces() -> tuple[Trace, Trace]:
    """Two spans of one OTel trace as the OTLP receiver makes them: 16-hex ids,
    ``metadata.otelTraceId``; the child, exported before its root (SimpleSpanProcessor),
    knows no ``rootId``."""
    start = int(time.time() * 1000) - 5_000
    root = Trace(
        id=OTEL_ROOT,
        start_time=start,
        end_time=start + 2000,
        kind="chain",
        name="rag-pipeline",
        request=Request(prompt="What is OTLP?"),
        response=Response(content="A protocol."),
        metadata={"otelTraceId": OTEL_TRACE, "rootId": OTEL_ROOT},
    )
    child = Trace(
        id=OTEL_CHILD,
        parent_id=OTEL_ROOT,
        start_time=start + 10,
        end_time=start + 900,
        provider="anthropic",
        model="claude-sonnet-4",
        request=Request(messages=[Message(role="user", content="What is OTLP?")]),
        response=Response(content="A protocol.", usage=Usage(prompt_tokens=4, completion_tokens=3)),
        metadata={"otelTraceId": OTEL_TRACE},
    )
    return root, child


async def test_otel_trace_keeps_its_ids_in_mlflow(mlflow_url: str) -> None:
    experiment = create_experiment(mlflow_url, "untrace-otel-ids")
    root, child = otel_traces()
    # Child and root in separate deliveries: the trace id comes from metadata, not the batch
    await send(mlflow_url, experiment, [[child], [root]])

    [trace] = await fetch_traces(mlflow_url, experiment, 2)
    assert trace["info"]["trace_id"] == f"tr-{OTEL_TRACE}"
    spans = {s["span_id"]: s for s in trace["spans"]}
    assert set(spans) == {OTEL_ROOT, OTEL_CHILD}
    assert {s["trace_id"] for s in spans.values()} == {OTEL_TRACE}
    assert spans[OTEL_CHILD]["parent_id"] == OTEL_ROOT
    assert spans[OTEL_ROOT]["parent_id"] is None
    assert spans[OTEL_ROOT]["attributes"]["mlflow.spanType"] == "CHAIN"
    usage = spans[OTEL_CHILD]["attributes"]["mlflow.chat.tokenUsage"]
    assert usage == {"input_tokens": 4, "output_tokens": 3, "total_tokens": 7}
