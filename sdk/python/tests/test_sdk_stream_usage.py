"""OpenAI streams without ``stream_options.include_usage``: the instrumented call asks
for usage, the trace has it, and the caller sees exactly the chunks it would have seen.

Each test runs the same call uninstrumented first (the reference) and then
instrumented, with the real openai SDK against the mock upstream, which (like the real
API) sends usage only when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sdk_fakes import TOOLS_OPENAI, Clients, Collector, MockLLM

import untrace

pytestmark = pytest.mark.timeout(30)

MESSAGES = [{"role": "user", "content": "hi"}]
USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
Traced = Callable[[], list[dict[str, Any]]]


def dumps(chunks: list[Any]) -> list[dict[str, Any]]:
    """What a caller can observe of each chunk (``to_dict`` leaves out unset fields)."""
    return [c.to_dict() for c in chunks]


def sent_options(mock: MockLLM) -> list[Any]:
    return [r.get("stream_options", "<absent>") for r in mock.requests]


@pytest.mark.parametrize("tools", [None, TOOLS_OPENAI], ids=["text", "tool_calls"])
def test_sync_stream_gets_usage_and_caller_sees_the_same_chunks(
    traced: Traced, mock_llm: MockLLM, sdk: Clients, tools: Any
) -> None:
    oai = sdk.oai()
    extra = {"tools": tools} if tools else {}
    untrace.uninstrument()
    reference = list(
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, **extra)
    )
    untrace.instrument()
    chunks = list(
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, **extra)
    )
    assert sent_options(mock_llm) == ["<absent>", {"include_usage": True}]
    assert len(chunks) == len(reference) and dumps(chunks) == dumps(reference)
    assert all(c.choices for c in chunks)  # the usage-only chunk was not yielded
    assert all("usage" not in c.model_fields_set for c in chunks)
    [llm] = traced()
    assert llm["response"]["usage"] == USAGE
    assert llm["response"]["finish_reason"] == ("tool_calls" if tools else "stop")
    assert llm["metrics"]["tokens_per_second"] > 0
    # the trace records the request as the caller made it
    assert "stream_options" not in llm["request"]["parameters"]


async def test_async_stream_gets_usage_and_caller_sees_the_same_chunks(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    oai = sdk.aoai()
    untrace.uninstrument()
    stream = await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    reference = [c async for c in stream]
    untrace.instrument()
    stream = await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    chunks = [c async for c in stream]
    assert sent_options(mock_llm) == ["<absent>", {"include_usage": True}]
    assert dumps(chunks) == dumps(reference) and len(chunks) == 7
    [llm] = traced()
    assert llm["response"]["usage"] == USAGE
    assert llm["response"]["content"] == "Hello from the stream"


def test_caller_who_asked_for_usage_gets_everything_unchanged(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    oai = sdk.oai()
    options = {"include_usage": True}
    untrace.uninstrument()
    reference = list(
        oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options=options
        )
    )
    untrace.instrument()
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options=options
        )
    )
    assert sent_options(mock_llm) == [options, options]
    assert dumps(chunks) == dumps(reference)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # theirs to see
    assert all("usage" in c.model_fields_set for c in chunks)
    [llm] = traced()
    assert llm["response"]["usage"] == USAGE


def test_other_stream_options_are_kept(traced: Traced, mock_llm: MockLLM, sdk: Clients) -> None:
    oai = sdk.oai()
    options = {"include_obfuscation": False}
    untrace.uninstrument()
    reference = list(
        oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options=options
        )
    )
    untrace.instrument()
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options=options
        )
    )
    assert sent_options(mock_llm) == [
        options,
        {"include_obfuscation": False, "include_usage": True},
    ]
    assert options == {"include_obfuscation": False}  # the caller's dict is not mutated
    assert dumps(chunks) == dumps(reference)
    [llm] = traced()
    assert llm["response"]["usage"] == USAGE
    assert llm["request"]["parameters"]["stream_options"] == options


def test_turned_off_by_config(collector: Collector, mock_llm: MockLLM, sdk: Clients) -> None:
    untrace.init("k", base_url=collector.url, openai_stream_usage=False)
    untrace.instrument()
    chunks = list(sdk.oai().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert len(chunks) == 7
    assert sent_options(mock_llm) == ["<absent>"]
    assert untrace.flush(5)
    [llm] = collector.accepted()
    assert "usage" not in llm["response"]
    assert llm["response"]["content"] == "Hello from the stream"


def test_server_that_rejects_stream_options_gets_the_callers_request(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    # a model name starting with "strict" makes the mock answer 400 to stream_options
    oai = sdk.oai()
    chunks = list(oai.chat.completions.create(model="strict-llm", messages=MESSAGES, stream=True))
    assert len(chunks) == 7
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the stream"
    assert sent_options(mock_llm) == [{"include_usage": True}, "<absent>"]
    # remembered per server: the next stream is sent as the caller asked, once
    assert (
        len(list(oai.chat.completions.create(model="strict-llm", messages=MESSAGES, stream=True)))
        == 7
    )
    assert sent_options(mock_llm)[2:] == ["<absent>"]
    one, two = traced()
    assert "error" not in one and "usage" not in one["response"]
    assert one["response"]["content"] == "Hello from the stream"
    assert "error" not in two


async def test_async_server_that_rejects_stream_options(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    stream = await sdk.aoai().chat.completions.create(
        model="strict-llm", messages=MESSAGES, stream=True
    )
    assert len([c async for c in stream]) == 7
    assert sent_options(mock_llm) == [{"include_usage": True}, "<absent>"]
    [llm] = traced()
    assert "error" not in llm


def test_raw_response_streams_are_left_alone(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    raw = sdk.oai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    chunks = list(raw.parse())
    assert len(chunks) == 7
    assert sent_options(mock_llm) == ["<absent>"]


def test_stream_helper_sees_the_same_events_and_trace_has_usage(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    oai = sdk.oai()

    def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        with oai.chat.completions.stream(
            model="gpt-4o", messages=MESSAGES, tools=TOOLS_OPENAI
        ) as s:
            events = [e.to_dict() for e in s]
            final = s.get_final_completion().to_dict()
        return events, final

    untrace.uninstrument()
    reference = run()
    untrace.instrument()
    assert run() == reference
    assert reference[1].get("usage") is None  # the caller did not ask, so still none
    assert sent_options(mock_llm) == ["<absent>", {"include_usage": True}]
    [llm] = traced()
    assert llm["response"]["usage"] == USAGE
    assert llm["response"]["messages"][0]["tool_calls"][0]["function"]["name"] == "get_weather"


async def test_async_stream_helper(traced: Traced, mock_llm: MockLLM, sdk: Clients) -> None:
    oai = sdk.aoai()

    async def run() -> tuple[list[str], str | None]:
        async with oai.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as s:
            kinds = [e.type async for e in s]
            final = await s.get_final_completion()
        return kinds, final.choices[0].message.content

    untrace.uninstrument()
    reference = await run()
    untrace.instrument()
    assert await run() == reference
    assert reference[1] == "Hello from the stream"
    [llm] = traced()
    assert llm["response"]["usage"] == USAGE
    assert llm["response"]["content"] == "Hello from the stream"


def test_stream_helper_left_early_is_traced_when_released(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    with sdk.oai().chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
        for event in stream:
            if event.type == "content.delta" and event.delta:
                break
    [llm] = traced()  # sent when the helper closed the HTTP response
    assert llm["response"]["content"] == "Hel"
    assert "error" not in llm


async def test_async_stream_helper_left_early_is_traced(
    traced: Traced, mock_llm: MockLLM, sdk: Clients
) -> None:
    async with sdk.aoai().chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
        async for event in stream:
            if event.type == "content.delta" and event.delta:
                break
    [llm] = traced()
    assert llm["response"]["content"] == "Hel"


def test_broken_prepare_or_hide_never_breaks_the_stream(
    traced: Traced, mock_llm: MockLLM, sdk: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    from untrace._instrument import _openai

    def broken(*args: Any) -> Any:
        raise RuntimeError("tracing bug")

    oai = sdk.oai()
    monkeypatch.setattr(_openai.OpenAIProvider, "prepare", broken)
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert len(chunks) == 7 and sent_options(mock_llm) == ["<absent>"]  # sent as asked
    monkeypatch.undo()
    monkeypatch.setattr(_openai.OpenAIProvider, "hide", broken)
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    # nothing can be hidden now: the caller gets every chunk, the call still works
    assert len(chunks) == 8 and chunks[-1].usage is not None
    one, two = traced()
    assert "usage" not in one["response"] and two["response"]["usage"] == USAGE
