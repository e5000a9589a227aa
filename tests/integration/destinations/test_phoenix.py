"""End to end against a real Arize Phoenix: traces sent through the ``otlp`` connector with
the ``phoenix`` preset (OpenInference attributes) appear through Phoenix's REST API with
model, token counts, input/output and parent/child links intact."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from untrace_server.destinations._ids import span_id, trace_id
from untrace_server.destinations.base import DestinationContext
from untrace_server.destinations.otlp import OtlpDestination
from untrace_server.model import Message, Request, Response, Trace, Usage

CONTEXT = DestinationContext(destination_id="d-phoenix", customer_id="c-1")


def traces() -> list[Trace]:
    start = int(time.time() * 1000) - 5_000
    root = Trace(
        id="e2e-root-1",
        start_time=start,
        end_time=start + 3000,
        kind="agent",
        name="support-agent",
        session_id="sess-42",
        request=Request(prompt="Where is my order?"),
        response=Response(content="It ships tomorrow."),
        metadata={"environment": "test", "userId": "user-7", "tags": {"team": "support"}},
    )
    child = Trace(
        id="e2e-child-1",
        parent_id="e2e-root-1",
        start_time=start + 100,
        end_time=start + 1350,
        provider="openai",
        model="gpt-4o-mini",
        session_id="sess-42",
        request=Request(
            messages=[
                Message(role="system", content="Be brief."),
                Message(role="user", content="Where is my order?"),
            ],
            parameters={"temperature": 0.2},
        ),
        response=Response(
            content="It ships tomorrow.",
            finish_reason="stop",
            usage=Usage(prompt_tokens=12, completion_tokens=5, total_tokens=17),
        ),
    )
    return [root, child]


async def fetch_spans(url: str, project: str, want: int) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        deadline = time.monotonic() + 30
        while True:  # Phoenix inserts spans asynchronously after its 200
            response = await client.get(f"/v1/projects/{project}/spans", params={"limit": 100})
            if response.status_code == 200:
                data: list[dict[str, Any]] = response.json()["data"]
                if len(data) >= want:
                    return data
            assert time.monotonic() < deadline, f"spans never appeared: {response.text[:500]}"
            await asyncio.sleep(0.3)


async def test_otlp_phoenix_preset_round_trip(phoenix_url: str) -> None:
    config = OtlpDestination.Config.model_validate(
        {"preset": "phoenix", "endpoint": phoenix_url, "project": "untrace-e2e"}
    )
    destination = OtlpDestination(config, CONTEXT)
    await destination.start()
    try:
        assert (await destination.health_check()).healthy
        result = await destination.send_batch(traces())
        assert result.delivered == 2
    finally:
        await destination.shutdown()

    spans = {s["name"]: s for s in await fetch_spans(phoenix_url, "untrace-e2e", 2)}
    root, child = spans["support-agent"], spans["chat gpt-4o-mini"]
    tid = trace_id("e2e-root-1").hex()
    assert root["context"]["trace_id"] == child["context"]["trace_id"] == tid
    assert root["context"]["span_id"] == span_id("e2e-root-1").hex()
    assert child["parent_id"] == root["context"]["span_id"]
    assert not root.get("parent_id")
    assert root["span_kind"] == "AGENT" and child["span_kind"] == "LLM"

    attrs = child["attributes"]
    assert attrs["llm.model_name"] == "gpt-4o-mini"
    assert attrs["llm.provider"] == "openai"
    assert attrs["llm.token_count.prompt"] == 12
    assert attrs["llm.token_count.completion"] == 5
    assert attrs["llm.token_count.total"] == 17
    assert attrs["llm.input_messages.1.message.content"] == "Where is my order?"
    assert attrs["llm.output_messages.0.message.content"] == "It ships tomorrow."
    assert attrs["output.value"] == "It ships tomorrow."
    assert "Where is my order?" in attrs["input.value"]
    assert attrs["session.id"] == "sess-42"
    assert root["attributes"]["input.value"] == "Where is my order?"
    assert root["attributes"]["user.id"] == "user-7"
