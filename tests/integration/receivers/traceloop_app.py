"""An app instrumented with the real traceloop-sdk (OpenLLMetry), run by
``test_traceloop.py`` inside the cached traceloop venv (see traceloop_env.sh), never
imported by the suite. A ``@workflow`` around three ``@task`` calls of the openai SDK
against the mock upstream: a plain chat, a streamed chat, a tool-call round trip.
Prints the OTel trace id of the workflow as JSON on its last line.

    python traceloop_app.py <untrace url> <untrace key> <upstream base url> <session id>
"""

from __future__ import annotations

import json
import sys

import openai
from opentelemetry import trace
from traceloop.sdk import Traceloop
from traceloop.sdk.decorators import task, workflow

URL, KEY, UPSTREAM, SESSION = sys.argv[1:5]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

Traceloop.init(
    app_name="traceloop-app",
    api_endpoint=URL,
    headers={"Authorization": f"Bearer {KEY}"},
    disable_batch=True,
    telemetry_enabled=False,
)
client = openai.OpenAI(api_key="sk-test", base_url=UPSTREAM)


@task(name="ask")
def ask(question: str) -> str:
    answer = client.chat.completions.create(
        model="gpt-4o-mini",
        max_tokens=20,
        temperature=0.3,
        messages=[{"role": "user", "content": question}],
    )
    return answer.choices[0].message.content or ""


@task(name="ask_streaming")
def ask_streaming(question: str) -> str:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


@task(name="use_tool")
def use_tool(question: str) -> str:
    messages: list[dict[str, object]] = [{"role": "user", "content": question}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    return second.choices[0].message.content or ""


@workflow(name="assistant")
def assistant() -> str:
    Traceloop.set_association_properties({"session_id": SESSION})
    span_context = trace.get_current_span().get_span_context()
    ask("ping")
    ask_streaming("stream me")
    use_tool("weather in Paris?")
    return format(span_context.trace_id, "032x")


trace_id = assistant()
trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
print(json.dumps({"trace_id": trace_id}))
