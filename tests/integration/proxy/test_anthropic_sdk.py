"""The official anthropic SDK through the proxy returns what it returns directly; traces
carry usage from message_start/message_delta, tool uses, stop reason and TTFT."""

from __future__ import annotations

import anthropic
import pytest
from tests.integration.proxy.conftest import ANTHROPIC_KEY, ProxyEnv

MESSAGES = [{"role": "user", "content": "Say hello"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
KW = {"model": "claude-test", "max_tokens": 64, "messages": MESSAGES}


def test_message_equals_direct_and_is_traced(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    via = proxy_env.anthropic(session).messages.create(
        **KW, system="Be brief", stop_sequences=["END"]
    )
    direct = proxy_env.anthropic(session, direct=True).messages.create(
        **KW, system="Be brief", stop_sequences=["END"]
    )
    assert via.model_dump() == direct.model_dump()
    upstream = proxy_env.upstream.requests[-2]
    sent = upstream["headers"]  # this SDK sends the key as a bearer token, older ones x-api-key
    assert ANTHROPIC_KEY in (sent.get("x-api-key"), sent.get("authorization", "")[7:])
    assert "anthropic-version" in upstream["headers"]

    [trace] = proxy_env.wait_traces(session)
    assert trace["provider"] == "anthropic"
    assert trace["model"] == "claude-test"
    assert trace["request"]["messages"][0] == {"role": "system", "content": "Be brief"}
    assert trace["request"]["messages"][1:] == MESSAGES
    assert trace["request"]["parameters"] == {"max_tokens": 64, "stop_sequences": ["END"]}
    assert trace["response"]["content"] == "Hello from the mock upstream."
    assert trace["response"]["finish_reason"] == "end_turn"
    assert trace["response"]["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "total_tokens": 19,
    }


def test_stream_equals_direct_and_usage_from_events(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    kw = {**KW, "model": "slow-20"}
    with proxy_env.anthropic(session).messages.stream(**kw) as stream:
        via_text = "".join(stream.text_stream)
        via = stream.get_final_message()
    with proxy_env.anthropic(session, direct=True).messages.stream(**kw) as stream:
        direct = stream.get_final_message()
    assert via.model_dump() == direct.model_dump()
    assert via_text == "Hello from the mock upstream."

    [trace] = proxy_env.wait_traces(session)
    assert trace["response"]["content"] == via_text
    assert trace["response"]["usage"]["prompt_tokens"] == 12
    assert trace["response"]["usage"]["completion_tokens"] == 7
    assert trace["metadata"]["stream"] is True
    m = trace["metrics"]
    assert 15 <= m["time_to_first_token_ms"] < m["latency_ms"]
    assert m["tokens_per_second"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use(proxy_env: ProxyEnv, stream: bool) -> None:
    session = proxy_env.session()
    client = proxy_env.anthropic(session)
    if stream:
        with client.messages.stream(**KW, tools=TOOLS) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**KW, tools=TOOLS)
    tool = next(b for b in message.content if b.type == "tool_use")
    assert tool.input == {"city": "Paris"}
    [trace] = proxy_env.wait_traces(session)
    assert trace["request"]["tools"] == TOOLS
    assert trace["response"]["finish_reason"] == "tool_use"
    assert trace["response"]["content"] == "Let me check."
    [call] = trace["response"]["messages"][0]["tool_calls"]
    assert call["id"] == "toolu_01"
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"].replace(" ", "") == '{"city":"Paris"}'


async def test_async_client(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    async with (
        proxy_env.async_anthropic(session) as via,
        proxy_env.async_anthropic(session, direct=True) as direct,
    ):
        a = await via.messages.create(**KW)
        b = await direct.messages.create(**KW)
        assert a.model_dump() == b.model_dump()
        chunks = [e async for e in await via.messages.create(**KW, stream=True)]
        assert chunks[0].type == "message_start" and chunks[-1].type == "message_stop"
    assert len(proxy_env.wait_traces(session, 2)) == 2


def test_overloaded_error_relayed(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    errors = []
    for client in (proxy_env.anthropic(session), proxy_env.anthropic(session, direct=True)):
        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.create(**{**KW, "model": "error-overloaded"})
        errors.append(info.value)
    assert errors[0].status_code == errors[1].status_code == 529
    assert errors[0].body == errors[1].body
    [trace] = proxy_env.wait_traces(session)
    assert trace["error"] == {"type": "overloaded_error", "message": "Overloaded"}
