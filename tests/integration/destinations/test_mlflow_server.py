"""The whole path against a real MLflow tracking server: traces POSTed to a running
Untrace server — as Untrace JSON, and as OTLP from an OTel app — reach MLflow through the
``otlp`` destination (``mlflow`` preset) with spans, the parent/child link, model, token
usage and input/output; the OTel trace keeps its original trace and span ids."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from tests.integration.destinations.test_mlflow import create_experiment, fetch_traces
from tests.support.server import ServerProcess, make_trace


def untrace_config(mlflow_url: str, experiment_id: str) -> dict[str, Any]:
    return {
        "customers": {
            "default": {
                "destinations": [
                    {
                        "id": "mlflow",
                        "type": "otlp",
                        "config": {
                            "preset": "mlflow",
                            "endpoint": mlflow_url,
                            "experiment_id": experiment_id,
                        },
                    }
                ],
                "routing": {"defaultDestinations": ["mlflow"]},
            }
        },
        "delivery": {"max_wait_s": 0.05},
    }


def test_traces_posted_to_untrace_appear_in_mlflow(
    mlflow_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    experiment = create_experiment(mlflow_url, "through-untrace")
    server = server_factory(untrace_config(mlflow_url, experiment)).start()
    root = make_trace(
        1,
        id="mlf-srv-root",
        kind="chain",
        name="answer-question",
        model=None,
        provider=None,
        sessionId="sess-9",
    )
    child = make_trace(
        2,
        id="mlf-srv-child",
        parentId="mlf-srv-root",
        sessionId="sess-9",
        response={
            "content": "Paris.",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 21, "completion_tokens": 2, "total_tokens": 23},
        },
        request={"messages": [{"role": "user", "content": "Capital of France?"}]},
    )
    response = server.post_traces([root, child])
    assert response.status_code == 202, response.text

    [trace] = asyncio.run(fetch_traces(mlflow_url, experiment, 2))
    assert trace["info"]["state"] == "OK"
    assert trace["info"]["trace_metadata"]["mlflow.trace.session"] == "sess-9"
    spans = {s["name"]: s for s in trace["spans"]}
    parent = spans.pop("answer-question")
    [llm] = spans.values()
    assert parent["parent_id"] is None
    assert llm["parent_id"] == parent["span_id"]
    assert llm["trace_id"] == parent["trace_id"]
    assert parent["attributes"]["mlflow.spanType"] == "CHAIN"
    attrs = llm["attributes"]
    assert attrs["mlflow.spanType"] == "CHAT_MODEL"
    assert attrs["mlflow.llm.model"] == "gpt-4o-mini"
    assert attrs["mlflow.chat.tokenUsage"] == {
        "input_tokens": 21,
        "output_tokens": 2,
        "total_tokens": 23,
    }
    assert "Capital of France?" in str(attrs["mlflow.spanInputs"])
    assert "Paris." in str(attrs["mlflow.spanOutputs"])


OTEL_TRACE = "0af7651916cd43dd8448eb211c80319c"
OTEL_ROOT = "b7ad6b7169203331"
OTEL_LLM = "c8be7c827a314442"


def _otlp_span(span_id: str, parent: str, name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    now = time.time_ns() - 5_000_000_000
    span: dict[str, Any] = {
        "traceId": OTEL_TRACE,
        "spanId": span_id,
        "name": name,
        "kind": 3 if parent else 1,
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 1_250_000_000),
        "attributes": [
            {
                "key": k,
                "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v},
            }
            for k, v in attrs.items()
        ],
        "status": {"code": 1},
    }
    if parent:
        span["parentSpanId"] = parent
    return span


def test_otel_app_through_untrace_keeps_its_trace_id_in_mlflow(
    mlflow_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    experiment = create_experiment(mlflow_url, "otel-through-untrace")
    server = server_factory(untrace_config(mlflow_url, experiment)).start()
    llm = _otlp_span(
        OTEL_LLM,
        OTEL_ROOT,
        "chat gpt-4o-mini",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 9,
            "gen_ai.usage.output_tokens": 3,
            "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"Hi"}]}]',
            "gen_ai.output.messages": (
                '[{"role":"assistant","parts":[{"type":"text","content":"Hello!"}]}]'
            ),
        },
    )
    root = _otlp_span(
        OTEL_ROOT, "", "greet", {"gen_ai.operation.name": "invoke_agent", "user.id": "u-3"}
    )
    # Two exports, the child first (as SimpleSpanProcessor does): it arrives without rootId
    for span in (llm, root):
        body = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": "otel-app"}}
                        ]
                    },
                    "scopeSpans": [{"scope": {"name": "manual"}, "spans": [span]}],
                }
            ]
        }
        response = httpx.post(
            f"{server.url}/v1/traces",
            json=body,
            headers={"Authorization": f"Bearer {server.key}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text

    [trace] = asyncio.run(fetch_traces(mlflow_url, experiment, 2))
    assert trace["info"]["trace_id"] == f"tr-{OTEL_TRACE}"
    spans = {s["span_id"]: s for s in trace["spans"]}
    assert set(spans) == {OTEL_ROOT, OTEL_LLM}
    assert {s["trace_id"] for s in spans.values()} == {OTEL_TRACE}
    assert spans[OTEL_LLM]["parent_id"] == OTEL_ROOT
    assert spans[OTEL_ROOT]["parent_id"] is None
    attrs = spans[OTEL_LLM]["attributes"]
    assert attrs["mlflow.llm.model"] == "gpt-4o-mini"
    assert attrs["mlflow.chat.tokenUsage"]["total_tokens"] == 12
    assert trace["info"]["trace_metadata"]["mlflow.trace.user"] == "u-3"
