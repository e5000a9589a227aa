"""The official openai SDK through the proxy returns what it returns directly, and the
delivered traces carry the call's content, usage, timing and metadata."""

from __future__ import annotations

import json

import openai
import pytest
from tests.integration.proxy.conftest import PROVIDER_KEY, ProxyEnv

MESSAGES = [{"role": "user", "content": "Say hello"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_chat_equals_direct_and_is_traced(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    kw = {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.3, "max_tokens": 50}
    via = proxy_env.openai(
        session,
        **{
            "X-Untrace-Tags": "team=search,tier=gold",
            "X-Untrace-Metadata-User-Id": "u-42",
            "X-Untrace-Application-Id": "app-1",
            "X-Untrace-Environment": "staging",
            "X-Untrace-Parent-Id": "parent-7",
        },
    ).chat.completions.create(**kw)
    direct = proxy_env.openai(session, direct=True).chat.completions.create(**kw)
    assert via.model_dump() == direct.model_dump()

    [trace] = proxy_env.wait_traces(session)
    assert trace["provider"] == "openai"
    assert trace["model"] == "gpt-4o-mini-2024"
    assert trace["parentId"] == "parent-7"
    assert trace["request"]["messages"] == MESSAGES
    assert trace["request"]["parameters"] == {"temperature": 0.3, "max_tokens": 50}
    assert trace["response"]["content"] == "Hello from the mock upstream."
    assert trace["response"]["finish_reason"] == "stop"
    assert trace["response"]["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 6,
        "total_tokens": 17,
    }
    meta = trace["metadata"]
    assert meta["tags"] == {"team": "search", "tier": "gold"}
    assert meta["user_id"] == "u-42"
    assert meta["applicationId"] == "app-1"
    assert meta["environment"] == "staging"
    assert meta["customerId"] == "default"
    assert trace["metrics"]["latency_ms"] > 0
    assert trace["endTime"] >= trace["startTime"]


def test_upstream_sees_provider_key_but_no_untrace_headers(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    proxy_env.openai(session).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    seen = [r for r in proxy_env.upstream.requests if session in json.dumps(r)]
    assert not seen, "the session id (an X-Untrace-* header) reached the upstream"
    last = proxy_env.upstream.requests[-1]
    assert last["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert not any(k.startswith("x-untrace") for k in last["headers"])
    assert last["headers"]["user-agent"].startswith("OpenAI/Python")


def test_headers_that_matter_are_relayed(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    raw = proxy_env.openai(session).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    direct = proxy_env.openai(session, direct=True).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert raw.status_code == 200
    assert raw.headers["content-encoding"] == "gzip"  # relayed compressed, as it came
    for name in ("x-request-id", "openai-processing-ms", "content-type", "content-length"):
        assert raw.headers[name] == direct.headers[name]
    assert raw.http_response.content == direct.http_response.content


def test_stream_equals_direct_without_the_usage_chunk(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    kw = {"model": "slow-20", "messages": MESSAGES, "stream": True}
    via = [c.model_dump() for c in proxy_env.openai(session).chat.completions.create(**kw)]
    direct = [
        c.model_dump() for c in proxy_env.openai(session, direct=True).chat.completions.create(**kw)
    ]
    assert via == direct
    assert all(c["usage"] is None for c in via)
    assert proxy_env.upstream.requests[-2]["body"]["stream_options"] == {"include_usage": True}

    [trace] = proxy_env.wait_traces(session)
    assert trace["response"]["content"] == "Hello from the mock upstream."
    assert trace["response"]["usage"]["total_tokens"] == 17
    assert trace["response"]["finish_reason"] == "stop"
    assert trace["metadata"]["stream"] is True
    assert "partial" not in trace["metadata"]
    assert "stream_options" not in trace["request"]["parameters"]
    m = trace["metrics"]
    assert 15 <= m["time_to_first_token_ms"] < m["latency_ms"]
    assert m["latency_ms"] >= 6 * 15
    assert m["tokens_per_second"] > 0


def test_compressed_stream_is_asked_uncompressed_so_the_usage_chunk_is_cut(
    proxy_env: ProxyEnv,
) -> None:
    session = proxy_env.session()
    kw = {"model": "gzip-mini", "messages": MESSAGES, "stream": True}
    direct_raw = proxy_env.openai(session, direct=True).chat.completions.with_raw_response
    direct_response = direct_raw.create(**kw)
    assert direct_response.headers["content-encoding"] == "gzip"  # the mock does compress
    direct = [c.model_dump() for c in direct_response.parse()]
    via = [c.model_dump() for c in proxy_env.openai(session).chat.completions.create(**kw)]
    assert via == direct
    assert all(c["usage"] is None for c in via)
    upstream = proxy_env.upstream.requests[-1]
    assert upstream["body"]["stream_options"] == {"include_usage": True}
    assert upstream["headers"]["accept-encoding"] == "identity"
    [trace] = proxy_env.wait_traces(session)
    assert trace["response"]["usage"]["total_tokens"] == 17
    assert trace["response"]["content"] == "Hello from the mock upstream."


def test_stream_with_client_usage_keeps_the_usage_chunk(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    kw = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    via = [c.model_dump() for c in proxy_env.openai(session).chat.completions.create(**kw)]
    direct = [
        c.model_dump() for c in proxy_env.openai(session, direct=True).chat.completions.create(**kw)
    ]
    assert via == direct
    assert via[-1]["usage"]["total_tokens"] == 17


def test_tool_calls_plain_and_streamed(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    client = proxy_env.openai(session)
    kw = {"model": "gpt-4o-mini", "messages": MESSAGES, "tools": TOOLS}
    plain = client.chat.completions.create(**kw)
    assert plain.model_dump() == (
        proxy_env.openai(session, direct=True).chat.completions.create(**kw).model_dump()
    )
    chunks = list(client.chat.completions.create(**kw, stream=True))
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert args == '{"city": "Paris"}'

    traces = proxy_env.wait_traces(session, 2)
    expected = [
        {
            "id": "call_abc123",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    for trace in traces:
        assert trace["request"]["tools"] == TOOLS
        assert trace["response"]["messages"][0]["tool_calls"] == expected
        assert trace["response"]["finish_reason"] == "tool_calls"


async def test_async_client_plain_and_stream(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    async with (
        proxy_env.async_openai(session) as via,
        proxy_env.async_openai(session, direct=True) as direct,
    ):
        kw = {"model": "gpt-4o-mini", "messages": MESSAGES}
        a = await via.chat.completions.create(**kw)
        b = await direct.chat.completions.create(**kw)
        assert a.model_dump() == b.model_dump()
        stream = await via.chat.completions.create(**kw, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello from the mock upstream."
    traces = proxy_env.wait_traces(session, 2)
    assert {t["metadata"].get("stream", False) for t in traces} == {True, False}


def test_other_endpoints(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    via, direct = proxy_env.openai(session), proxy_env.openai(session, direct=True)
    for call in (
        lambda c: c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hello"),
        lambda c: c.embeddings.create(model="text-embedding-3-small", input=["a", "b"]),
        lambda c: c.responses.create(model="gpt-4o-mini", input="Say hello"),
        lambda c: c.models.list().data,
    ):
        a, b = call(via), call(direct)
        dump = (lambda x: [m.model_dump() for m in x]) if isinstance(a, list) else None
        assert (dump(a) if dump else a.model_dump()) == (dump(b) if dump else b.model_dump())
    traces = {t["metadata"]["endpoint"]: t for t in proxy_env.wait_traces(session, 3)}
    assert set(traces) == {"completions", "embeddings", "responses"}  # models: passthrough
    assert traces["completions"]["request"]["prompt"] == "Hello"
    assert traces["completions"]["response"]["content"] == " world"
    assert traces["embeddings"]["kind"] == "embedding"
    assert traces["embeddings"]["response"]["usage"]["prompt_tokens"] == 4
    assert traces["responses"]["response"]["content"] == "Hello from the mock upstream."
    assert traces["responses"]["response"]["usage"]["total_tokens"] == 15


@pytest.mark.parametrize("model", ["error-429", "error-500"])
def test_upstream_errors_relayed_and_traced(proxy_env: ProxyEnv, model: str) -> None:
    session = proxy_env.session()
    errors = []
    for client in (proxy_env.openai(session), proxy_env.openai(session, direct=True)):
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=model, messages=MESSAGES)
        errors.append(info.value)
    via, direct = errors
    assert type(via) is type(direct)
    assert via.status_code == direct.status_code
    assert via.body == direct.body
    [trace] = proxy_env.wait_traces(session)
    assert trace["error"]["message"] == direct.body["message"]  # type: ignore[index]


def test_azure_openai_client_through_the_proxy(proxy_env: ProxyEnv) -> None:
    """The real AzureOpenAI client: its base URL is the proxy (the SDK adds
    /deployments/<model>); the customer's upstream is the Azure resource's /openai."""
    session = proxy_env.session()
    azure_key = "azure-PROVIDERKEY-0a1b2c3d"
    kw = {"api_key": azure_key, "api_version": "2024-10-21", "max_retries": 0}
    headers = {"X-Untrace-Key": proxy_env.azure_key, "X-Untrace-Session-Id": session}
    via = openai.AzureOpenAI(
        base_url=proxy_env.server.url + "/openai/v1", default_headers=headers, **kw
    )
    direct = openai.AzureOpenAI(azure_endpoint=proxy_env.upstream.url.removesuffix("/v1"), **kw)
    proxy_env.clients += [via, direct]
    call = {"model": "gpt-4o-mini", "messages": MESSAGES}
    assert (
        via.chat.completions.create(**call).model_dump()
        == direct.chat.completions.create(**call).model_dump()
    )
    streamed = list(via.chat.completions.create(**call, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == (
        "Hello from the mock upstream."
    )
    seen = [r for r in proxy_env.upstream.requests if r["path"].startswith("/openai/")]
    assert {r["path"] for r in seen} == {"/openai/deployments/gpt-4o-mini/chat/completions"}
    assert all(r["query"] == {"api-version": "2024-10-21"} for r in seen)
    assert all(r["headers"]["api-key"] == azure_key for r in seen)

    traces = proxy_env.wait_traces(session, 2)
    assert {t["metadata"]["customerId"] for t in traces} == {"azure"}
    assert all(t["model"].startswith("gpt-4o-mini") for t in traces)
    assert all(t["response"]["usage"]["total_tokens"] == 17 for t in traces)
    assert all(t["response"]["content"] == "Hello from the mock upstream." for t in traces)
    assert azure_key not in json.dumps(traces)


def test_responses_api_stream(proxy_env: ProxyEnv) -> None:
    session = proxy_env.session()
    kw = {"model": "slow-10", "input": "Say hello", "stream": True}
    via = [e.model_dump() for e in proxy_env.openai(session).responses.create(**kw)]
    direct = [e.model_dump() for e in proxy_env.openai(session, direct=True).responses.create(**kw)]
    assert via == direct
    assert via[-1]["type"] == "response.completed"
    text = "".join(e["delta"] for e in via if e["type"] == "response.output_text.delta")
    assert text == "Hello from the mock upstream."

    [trace] = proxy_env.wait_traces(session)
    assert trace["metadata"]["endpoint"] == "responses" and trace["metadata"]["stream"] is True
    assert trace["request"]["prompt"] == "Say hello"
    assert trace["response"]["content"] == "Hello from the mock upstream."
    assert trace["response"]["usage"] == {
        "prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15, "cached_tokens": 0
    }  # fmt: skip
    m = trace["metrics"]
    assert 10 <= m["time_to_first_token_ms"] < m["latency_ms"]
    assert m["tokens_per_second"] > 0
