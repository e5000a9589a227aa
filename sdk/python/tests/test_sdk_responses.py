"""instrument(): the OpenAI Responses API and anthropic's ``messages.stream()`` helper,
with the real SDKs against the mock upstream."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest
from pydantic import BaseModel
from sdk_fakes import COMPLETION_TEXT, STRUCTURED, Clients, MockLLM

import untrace

pytestmark = pytest.mark.timeout(30)

Traced = Callable[[], list[dict[str, Any]]]
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "cached_tokens": 3}
STREAMED = "Hello from the stream"
WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}


# -- responses.create -----------------------------------------------------------------


def test_responses_create(traced: Traced, mock_llm: MockLLM, sdk: Clients) -> None:
    with untrace.span("app", session_id="s1") as app:
        result = sdk.oai().responses.create(
            model="gpt-4o", instructions="be brief", input="hi", temperature=0.2
        )
    assert result.output_text == COMPLETION_TEXT
    [llm] = [t for t in traced() if t["kind"] == "llm"]
    assert llm["name"] == "openai.responses" and llm["provider"] == "openai"
    assert llm["model"] == "gpt-4o-0613"
    assert llm["parentId"] == app.id and llm["sessionId"] == "s1"
    assert llm["request"]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert llm["request"]["parameters"] == {"temperature": 0.2}
    assert llm["response"]["content"] == COMPLETION_TEXT
    assert llm["response"]["finish_reason"] == "stop"
    assert llm["response"]["usage"] == USAGE
    assert llm["metrics"]["latency_ms"] > 0


def test_responses_tools_and_input_items(traced: Traced, mock_llm: MockLLM, sdk: Clients) -> None:
    oai = sdk.oai()
    first = oai.responses.create(model="gpt-4o", input="weather in Paris?", tools=TOOLS)
    [call] = [item for item in first.output if item.type == "function_call"]
    # the usual loop: pass the model's output items (SDK objects) back with the result
    second = oai.responses.create(
        model="gpt-4o",
        input=[
            {"role": "user", "content": "weather in Paris?"},
            *first.output,
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
        tools=TOOLS,
    )
    assert second.output_text == COMPLETION_TEXT
    one, two = traced()
    assert one["request"]["tools"] == TOOLS
    assert one["response"]["finish_reason"] == "tool_calls"
    assert one["response"]["messages"] == [
        {"role": "assistant", "content": COMPLETION_TEXT, "tool_calls": [WEATHER_CALL]}
    ]
    assert two["request"]["messages"] == [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": [{"type": "output_text", "text": COMPLETION_TEXT, "annotations": []}],
        },
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]


def test_responses_error_is_traced_and_reraised(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    with pytest.raises(openai.BadRequestError):
        sdk.oai().responses.create(model="error-model", input="hi")
    [llm] = traced()
    assert llm["name"] == "openai.responses" and llm["error"]["type"] == "BadRequestError"


# -- responses.create(stream=True) and responses.stream() -----------------------------


@pytest.mark.parametrize("tools", [None, TOOLS], ids=["text", "tool_calls"])
def test_responses_stream(traced: Traced, mock_llm: MockLLM, sdk: Clients, tools: Any) -> None:
    mock_llm.chunk_delay = 0.01
    oai = sdk.oai()
    extra = {"tools": tools} if tools else {}
    untrace.uninstrument()
    reference = [
        e.to_dict() for e in oai.responses.create(model="gpt-4o", input="hi", stream=True, **extra)
    ]
    untrace.instrument()
    stream = oai.responses.create(model="gpt-4o", input="hi", stream=True, **extra)
    assert isinstance(stream, openai.Stream)
    assert [e.to_dict() for e in stream] == reference  # nothing added or hidden
    assert "stream_options" not in mock_llm.requests[-1]
    [llm] = traced()
    assert llm["name"] == "openai.responses" and llm["model"] == "gpt-4o-0613"
    assert llm["response"]["content"] == STREAMED
    assert llm["response"]["usage"] == USAGE
    if tools:
        assert llm["response"]["messages"][0]["tool_calls"] == [WEATHER_CALL]
        assert llm["response"]["finish_reason"] == "tool_calls"
    else:
        assert llm["response"]["finish_reason"] == "stop"
    m = llm["metrics"]
    assert 5 <= m["time_to_first_token_ms"] < m["latency_ms"]


def test_responses_stream_closed_early(traced: Traced, mock_llm: MockLLM, sdk: Clients) -> None:
    stream = sdk.oai().responses.create(model="gpt-4o", input="hi", stream=True)
    for event in stream:
        if event.type == "response.output_text.delta":
            break
    stream.close()
    [llm] = traced()
    assert llm["model"] == "gpt-4o-0613"
    assert llm["response"]["content"] == "Hel"
    assert "usage" not in llm["response"]


async def test_responses_async_and_async_stream(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    oai = sdk.aoai()
    result = await oai.responses.create(model="gpt-a", input="hi")
    stream = await oai.responses.create(model="gpt-b", input="hi", stream=True)
    assert isinstance(stream, openai.AsyncStream)
    kinds = [e.type async for e in stream]
    assert kinds[-1] == "response.completed"
    assert result.output_text == COMPLETION_TEXT
    a, b = sorted(traced(), key=lambda t: t["model"])
    assert (a["model"], b["model"]) == ("gpt-a-0613", "gpt-b-0613")
    assert b["response"]["content"] == STREAMED and b["response"]["usage"] == USAGE
    assert "time_to_first_token_ms" in b["metrics"]


def test_responses_stream_helper(traced: Traced, mock_llm: MockLLM, sdk: Clients) -> None:
    with sdk.oai().responses.stream(model="gpt-4o", input="hi", tools=TOOLS) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == STREAMED and final.output_text == STREAMED
    [llm] = traced()
    assert llm["name"] == "openai.responses"
    assert llm["request"]["messages"] == [{"role": "user", "content": "hi"}]
    assert llm["response"]["content"] == STREAMED
    assert llm["response"]["messages"][0]["tool_calls"] == [WEATHER_CALL]
    assert llm["response"]["usage"] == USAGE


async def test_responses_async_stream_helper(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    async with sdk.aoai().responses.stream(model="gpt-4o", input="hi") as stream:
        final = await stream.get_final_response()
    assert final.output_text == STREAMED
    [llm] = traced()
    assert llm["response"]["content"] == STREAMED and llm["response"]["usage"] == USAGE


# -- anthropic messages.stream() -------------------------------------------------------

ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
ANTHROPIC_USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


def test_anthropic_stream_helper(traced: Traced, mock_llm: MockLLM, sdk: Clients) -> None:
    mock_llm.chunk_delay = 0.01
    claude = sdk.claude()
    kwargs: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 100,
        "system": "be brief",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": ANTHROPIC_TOOLS,
    }
    untrace.uninstrument()
    with claude.messages.stream(**kwargs) as stream:
        reference = [e.to_dict() for e in stream]
    untrace.instrument()
    with untrace.span("app") as app, claude.messages.stream(**kwargs) as stream:
        assert isinstance(stream, anthropic.MessageStream)
        events = [e.to_dict() for e in stream]
        final = stream.get_final_message()
    assert events == reference
    assert final.stop_reason == "tool_use"
    [llm] = [t for t in traced() if t["kind"] == "llm"]
    assert llm["name"] == "anthropic.chat" and llm["parentId"] == app.id
    assert llm["request"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert llm["request"]["parameters"] == {"max_tokens": 100}
    assert llm["response"]["content"] == STREAMED
    assert llm["response"]["usage"] == ANTHROPIC_USAGE
    assert llm["response"]["finish_reason"] == "tool_use"
    [call] = llm["response"]["messages"][0]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    m = llm["metrics"]
    assert 5 <= m["time_to_first_token_ms"] < m["latency_ms"]


def test_anthropic_stream_helper_left_early(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    with sdk.claude().messages.stream(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        for text in stream.text_stream:
            assert text == "Hel"
            break
    [llm] = traced()  # sent when the context manager closed the stream
    assert llm["response"]["content"] == "Hel"
    assert "error" not in llm


def test_anthropic_stream_helper_error(traced: Traced, mock_llm: MockLLM, sdk: Clients) -> None:
    manager = sdk.claude().messages.stream(
        model="error-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    with pytest.raises(anthropic.BadRequestError), manager:
        pass
    [llm] = traced()
    assert llm["error"]["type"] == "BadRequestError" and llm["model"] == "error-model"


async def test_anthropic_async_stream_helper(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    async with sdk.aclaude().messages.stream(
        model="claude-a", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == STREAMED
    [llm] = traced()
    assert llm["model"] == "claude-a" and llm["response"]["content"] == STREAMED
    assert llm["response"]["usage"] == ANTHROPIC_USAGE


def test_unused_stream_manager_sends_nothing(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    sdk.claude().messages.stream(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert traced() == [] and mock_llm.requests == []


# -- structured output: chat.completions.parse() / responses.parse() --------------------


class Weather(BaseModel):
    city: str
    temperature: int


def test_chat_parse(traced: Traced, mock_llm: MockLLM, sdk: Clients) -> None:
    result = sdk.oai().chat.completions.parse(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], response_format=Weather
    )
    assert result.choices[0].message.parsed == Weather(city="Paris", temperature=21)
    [llm] = traced()
    assert llm["name"] == "openai.chat" and llm["response"]["content"] == STRUCTURED
    assert llm["response"]["usage"]["total_tokens"] == 18
    assert "Weather" in llm["request"]["parameters"]["response_format"]


async def test_responses_parse_async(traced: Traced, mock_llm: MockLLM, sdk: Clients) -> None:
    result = await sdk.aoai().responses.parse(model="gpt-4o", input="hi", text_format=Weather)
    assert result.output_parsed == Weather(city="Paris", temperature=21)
    [llm] = traced()
    assert llm["name"] == "openai.responses" and llm["response"]["content"] == STRUCTURED
    assert llm["response"]["usage"] == USAGE
