"""The langfuse SDK (v5, OTLP) pointed at ``/langfuse`` with an Untrace key as its secret,
and the legacy ``/api/public/ingestion`` batch with its 207 answer."""

from __future__ import annotations

import base64
import uuid

import httpx
from langfuse import Langfuse, propagate_attributes
from opentelemetry.sdk.trace import TracerProvider
from tests.integration.receivers.conftest import Recorder


def _basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"pk-lf-any:{secret}".encode()).decode()


def test_langfuse_sdk_generation_in_a_span(recorder: Recorder) -> None:
    lf = Langfuse(
        public_key="pk-lf-any",
        secret_key=recorder.key,
        base_url=recorder.url + "/langfuse",
        tracer_provider=TracerProvider(),
    )
    session = f"lf-{uuid.uuid4()}"
    with (
        lf.start_as_current_observation(name="rag", as_type="span") as root,
        propagate_attributes(session_id=session, user_id="u-7", tags=["beta"]),
    ):
        root.update(input={"question": "capital of France?"})
        with lf.start_as_current_observation(
            name="llm-call",
            as_type="generation",
            model="gpt-4o",
            model_parameters={"temperature": 0.5},
            input=[{"role": "user", "content": "capital of France?"}],
        ) as gen:
            gen.update(
                output={"role": "assistant", "content": "Paris"},
                usage_details={"input": 12, "output": 3},
            )
        root.update(output="Paris")
    lf.flush()
    lf.shutdown()
    traces = recorder.wait_for(lambda t: t.get("sessionId") == session, 2)
    by_name = {t["name"]: t for t in traces}
    span, generation = by_name["rag"], by_name["llm-call"]
    assert span["kind"] == "chain" and generation.get("kind", "llm") == "llm"
    assert generation["parentId"] == span["id"]
    assert span["metadata"]["otelTraceId"] == generation["metadata"]["otelTraceId"]
    assert generation["model"] == "gpt-4o"
    assert generation["request"]["messages"] == [{"role": "user", "content": "capital of France?"}]
    assert generation["response"]["messages"] == [{"role": "assistant", "content": "Paris"}]
    assert generation["response"]["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
    }
    assert generation["metadata"]["userId"] == "u-7"
    assert generation["metadata"]["tags"] == {"beta": ""}
    assert span["response"]["content"] == "Paris"


def test_legacy_ingestion_207(recorder: Recorder) -> None:
    trace_id, gen_id = f"tr-{uuid.uuid4()}", f"gen-{uuid.uuid4()}"
    batch = [
        {
            "id": "e1",
            "type": "trace-create",
            "timestamp": "2025-01-01T12:00:01.250Z",
            "body": {
                "id": trace_id,
                "timestamp": "2025-01-01T12:00:00.000Z",
                "name": "chat",
                "userId": "u1",
                "sessionId": "s-legacy",
            },
        },
        {
            "id": "e2",
            "type": "generation-create",
            "timestamp": "2025-01-01T12:00:01.250Z",
            "body": {
                "id": gen_id,
                "traceId": trace_id,
                "name": "openai.chat",
                "startTime": "2025-01-01T12:00:00.000Z",
                "model": "gpt-4o-mini",
                "input": [{"role": "user", "content": "Hi"}],
            },
        },
        {
            "id": "e3",
            "type": "generation-update",
            "timestamp": "2025-01-01T12:00:01.300Z",
            "body": {
                "id": gen_id,
                "endTime": "2025-01-01T12:00:01.250Z",
                "output": {"role": "assistant", "content": "Hello!"},
                "usageDetails": {"input": 5, "output": 2, "total": 7},
            },
        },
        {"id": "e4", "type": "score-create", "body": {"id": "sc", "name": "q", "value": 1}},
        {"id": "e5", "type": "bogus-create", "body": {"id": "x"}},
        {"id": "e6", "type": "span-create", "body": {"name": "no id"}},
    ]
    response = httpx.post(
        recorder.url + "/langfuse/api/public/ingestion",
        json={"batch": batch},
        headers={"Authorization": _basic(recorder.key)},
    )
    assert response.status_code == 207, response.text
    body = response.json()
    assert sorted(s["id"] for s in body["successes"]) == ["e1", "e2", "e3", "e4"]
    assert sorted((e["id"], e["status"]) for e in body["errors"]) == [("e5", 400), ("e6", 400)]
    traces = recorder.wait_for(lambda t: t["metadata"].get("rootId") == trace_id, 2)
    gen = next(t for t in traces if t["id"] == gen_id)
    assert gen["parentId"] == trace_id and gen["sessionId"] == "s-legacy"
    assert gen["metadata"]["userId"] == "u1"
    assert gen["endTime"] - gen["startTime"] == 1250
    assert gen["response"]["usage"]["total_tokens"] == 7
    assert gen["response"]["messages"] == [{"role": "assistant", "content": "Hello!"}]


def test_langfuse_auth_and_malformed(recorder: Recorder) -> None:
    url = recorder.url + "/langfuse/api/public/ingestion"
    assert (
        httpx.post(url, json={"batch": []}, headers={"Authorization": _basic("wrong")}).status_code
        == 401
    )
    bad = httpx.post(url, json={"events": []}, headers={"Authorization": _basic(recorder.key)})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "malformed"
