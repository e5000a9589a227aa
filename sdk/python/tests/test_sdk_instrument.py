"""instrument(): the real openai and anthropic SDKs against a local mock upstream."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from sdk_fakes import COMPLETION_TEXT, Clients, Collector, MockLLM

import untrace

pytestmark = pytest.mark.timeout(30)

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


# -- openai ---------------------------------------------------------------------------


def test_openai_sync(traced: Any, mock_llm: MockLLM, sdk: Clients) -> None:
    with untrace.span("app", session_id="s1") as app:
        result = sdk.oai().chat.completions.create(
            model="gpt-4o", messages=MESSAGES, temperature=0.2, max_tokens=50
        )
    assert result.choices[0].message.content == COMPLETION_TEXT
    [llm] = [t for t in traced() if t["kind"] == "llm"]
    assert llm["provider"] == "openai" and llm["model"] == "gpt-4o-0613"
    assert llm["parentId"] == app.id and llm["sessionId"] == "s1"
    assert llm["request"]["messages"] == MESSAGES
    assert llm["request"]["parameters"] == {"temperature": 0.2, "max_tokens": 50}
    assert llm["response"]["content"] == COMPLETION_TEXT
    assert llm["response"]["finish_reason"] == "stop"
    assert llm["response"]["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
        "cached_tokens": 3,
    }
    assert llm["metrics"]["latency_ms"] > 0 and llm["metrics"]["tokens_per_second"] > 0
    assert "time_to_first_token_ms" not in llm["metrics"]


def test_openai_tool_calls(traced: Any, mock_llm: MockLLM, sdk: Clients) -> None:
    result = sdk.oai().chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS)
    assert result.choices[0].finish_reason == "tool_calls"
    [llm] = traced()
    assert llm["request"]["tools"] == TOOLS
    assert llm["response"]["finish_reason"] == "tool_calls"
    assert llm["response"]["messages"][0]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]


def test_openai_stream_with_usage_and_ttft(traced: Any, mock_llm: MockLLM, sdk: Clients) -> None:
    mock_llm.chunk_delay = 0.02
    stream = sdk.oai().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(stream, openai.Stream)  # the caller gets the SDK's own type
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from the stream"
    [llm] = traced()
    assert llm["response"]["content"] == "Hello from the stream"
    assert llm["response"]["usage"]["completion_tokens"] == 5
    assert llm["response"]["finish_reason"] == "stop"
    m = llm["metrics"]
    # first content arrives after the role chunk: one delay in; the whole stream ~7 delays
    assert 15 <= m["time_to_first_token_ms"] < m["latency_ms"]
    assert m["latency_ms"] >= 120
    assert m["tokens_per_second"] > 0


def test_openai_stream_tool_calls_and_context_manager(
    traced: Any, mock_llm: MockLLM, sdk: Clients
) -> None:
    with sdk.oai().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, tools=TOOLS, stream=True
    ) as stream:
        chunks = list(stream)
    assert len(chunks) == 4
    [llm] = traced()
    assert llm["response"]["messages"][0]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert llm["response"]["finish_reason"] == "tool_calls"


def test_openai_stream_abandoned_early_still_traced(
    traced: Any, mock_llm: MockLLM, sdk: Clients
) -> None:
    stream = sdk.oai().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    next(stream)
    next(stream)
    stream.close()
    [llm] = traced()
    assert llm["model"] == "gpt-4o-0613"
    assert llm["response"]["content"] == "Hel"
    assert "error" not in llm


# dropping an unread stream leaks its connection inside the openai SDK (ResourceWarning)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_openai_stream_dropped_unread_is_traced_when_collected(
    traced: Any, mock_llm: MockLLM, sdk: Clients
) -> None:
    import gc

    stream = sdk.oai().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    del stream
    gc.collect()
    [llm] = traced()
    assert llm["model"] == "gpt-4o"  # no chunk was read: the requested model
    assert llm["response"]["content"] is None


def test_openai_error_is_traced_and_reraised(traced: Any, mock_llm: MockLLM, sdk: Clients) -> None:
    with pytest.raises(openai.BadRequestError):
        sdk.oai().chat.completions.create(model="error-model", messages=MESSAGES)
    [llm] = traced()
    assert llm["error"]["type"] == "BadRequestError"
    assert llm["metadata"] == {"http_status": 400}
    assert llm["model"] == "error-model"


async def test_openai_async_and_async_stream(traced: Any, mock_llm: MockLLM, sdk: Clients) -> None:
    client = sdk.aoai()
    async with untrace.span("async-app") as app:
        result = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert isinstance(stream, openai.AsyncStream)
        parts = [c.choices[0].delta.content async for c in stream if c.choices]
    assert result.choices[0].message.content == COMPLETION_TEXT
    assert "".join(p or "" for p in parts) == "Hello from the stream"
    llms = sorted((t for t in traced() if t["kind"] == "llm"), key=lambda t: t["model"])
    assert [t["model"] for t in llms] == ["gpt-4o-0613", "gpt-4o-mini-0613"]
    assert all(t["parentId"] == app.id for t in llms)
    assert llms[1]["response"]["content"] == "Hello from the stream"
    assert llms[1]["response"]["usage"]["total_tokens"] == 16
    assert "time_to_first_token_ms" in llms[1]["metrics"]


def test_uninstrument_restores_and_no_client_means_no_tracing(
    traced: Any, mock_llm: MockLLM, collector: Collector, sdk: Clients
) -> None:
    untrace.uninstrument()
    assert not hasattr(openai.resources.chat.completions.Completions.create, "__untrace_original__")
    sdk.oai().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert traced() == []
    assert untrace.instrument(providers=("openai",)) == ["openai"]
    assert untrace.instrument(providers=("openai",)) == ["openai"]  # no double patching
    sdk.oai().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(traced()) == 1
    untrace.shutdown()
    untrace.init("k", base_url=collector.url, enabled=False)
    result = sdk.oai().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert result.choices[0].message.content == COMPLETION_TEXT
    assert len(collector.accepted()) == 1


def test_tracing_failure_never_breaks_the_call(
    traced: Any, mock_llm: MockLLM, monkeypatch: pytest.MonkeyPatch, sdk: Clients
) -> None:
    from untrace._instrument import _openai

    def broken(self: Any, result: Any) -> Any:
        raise RuntimeError("tracing bug")

    monkeypatch.setattr(_openai.OpenAIProvider, "response", broken)
    result = sdk.oai().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert result.choices[0].message.content == COMPLETION_TEXT


def test_messages_list_is_copied_at_call_time(traced: Any, mock_llm: MockLLM, sdk: Clients) -> None:
    history = [{"role": "user", "content": "hi"}]
    sdk.oai().chat.completions.create(model="gpt-4o", messages=history)
    history.append({"role": "assistant", "content": "later"})
    [llm] = traced()
    assert llm["request"]["messages"] == [{"role": "user", "content": "hi"}]


# -- anthropic ------------------------------------------------------------------------


def test_anthropic_sync_with_tools(traced: Any, mock_llm: MockLLM, sdk: Clients) -> None:
    result = sdk.claude().messages.create(
        model="claude-x",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "weather?"}],
        tools=ANTHROPIC_TOOLS,
    )
    assert result.stop_reason == "tool_use"
    [llm] = traced()
    assert llm["provider"] == "anthropic" and llm["model"] == "claude-x"
    assert llm["request"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert llm["request"]["parameters"] == {"max_tokens": 100}
    assert llm["request"]["tools"] == ANTHROPIC_TOOLS
    assert llm["response"]["content"] == COMPLETION_TEXT
    assert llm["response"]["finish_reason"] == "tool_use"
    assert llm["response"]["usage"] == {
        "prompt_tokens": 16,
        "completion_tokens": 6,
        "total_tokens": 22,
        "cached_tokens": 4,
    }
    [call] = llm["response"]["messages"][0]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_anthropic_stream(traced: Any, mock_llm: MockLLM, sdk: Clients) -> None:
    stream = sdk.claude().messages.create(
        model="claude-x",
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}],
        tools=ANTHROPIC_TOOLS,
        stream=True,
    )
    assert isinstance(stream, anthropic.Stream)
    events = [e.type for e in stream]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    [llm] = traced()
    assert llm["response"]["content"] == "Hello from the stream"
    assert llm["response"]["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 9,
        "total_tokens": 21,
    }
    assert llm["response"]["finish_reason"] == "tool_use"
    [call] = llm["response"]["messages"][0]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert 0 < llm["metrics"]["time_to_first_token_ms"] <= llm["metrics"]["latency_ms"]


async def test_anthropic_async_and_async_stream(
    traced: Any, mock_llm: MockLLM, sdk: Clients
) -> None:
    client = sdk.aclaude()
    msg = await client.messages.create(
        model="claude-a", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    stream = await client.messages.create(
        model="claude-b", max_tokens=10, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    async for _ in stream:
        pass
    assert msg.content[0].text == COMPLETION_TEXT
    llms = sorted(traced(), key=lambda t: t["model"])
    assert [t["model"] for t in llms] == ["claude-a", "claude-b"]
    assert llms[1]["response"]["content"] == "Hello from the stream"


def test_stream_failing_midway_is_traced_with_its_error(traced: Any) -> None:
    """The SDK's stream closes its HTTP response on the way out of an error; the trace
    must still carry the error (not be sent early by that close)."""
    from types import SimpleNamespace

    from untrace._instrument._call import LLMCall
    from untrace._instrument._openai import OpenAIProvider

    class FakeResponse:
        def __init__(self) -> None:
            self.closed = 0

        def close(self) -> None:
            self.closed += 1

    class FakeStream:
        def __init__(self) -> None:
            self.response = FakeResponse()
            self._iterator = self._chunks()

        def _chunks(self) -> Any:
            try:
                delta = SimpleNamespace(content="Hel", tool_calls=None)
                choice = SimpleNamespace(index=0, delta=delta, finish_reason=None)
                yield SimpleNamespace(model="m-1", choices=[choice], usage=None)
                raise ConnectionResetError("upstream went away")
            finally:
                self.response.close()

    client = untrace.get_client()
    assert client is not None
    stream = FakeStream()
    LLMCall(client, OpenAIProvider(), {"model": "m", "stream": True}).finish(stream)
    got = []
    with pytest.raises(ConnectionResetError):
        for chunk in stream._iterator:
            got.append(chunk)
    assert len(got) == 1 and stream.response.closed == 1
    [llm] = traced()
    assert llm["error"]["type"] == "ConnectionResetError"
    assert llm["response"]["content"] == "Hel"
