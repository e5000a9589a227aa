"""End to end against a real ``untrace serve`` (file destination), driven like a user."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import openai
import pytest
from sdk_fakes import MockLLM, SlowProxy, serving

import untrace
from conftest import SERVER_KEY, RealServer
from untrace import Config, Untrace

pytestmark = pytest.mark.timeout(60)


def session_of(marker: str) -> Any:
    return lambda t: t.get("sessionId") == marker


def test_span_tree_and_instrumented_openai_call_arrive(
    untrace_server: RealServer, mock_llm: MockLLM
) -> None:
    marker = f"e2e-{uuid.uuid4()}"
    untrace.init(SERVER_KEY, base_url=untrace_server.url, environment="test")
    untrace.instrument()
    with openai.OpenAI(api_key="sk", base_url=mock_llm.url + "/v1", max_retries=0) as oai:

        @untrace.observe(name="answer", kind="agent")
        def answer(question: str) -> str:
            with untrace.span("retrieve", kind="retrieval") as sp:
                sp.set_output(["doc1", "doc2"])
            reply = oai.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": question}]
            )
            return reply.choices[0].message.content or ""

        with untrace.span("request", session_id=marker) as root:
            assert answer("why?") == "Hello from the mock"
    assert untrace.flush(10)
    got = {t["name"]: t for t in untrace_server.wait_for(session_of(marker), 4)}
    assert set(got) == {"request", "answer", "retrieve", "openai.chat"}
    assert got["answer"]["parentId"] == root.id
    assert got["retrieve"]["parentId"] == got["answer"]["id"]
    llm = got["openai.chat"]
    assert llm["parentId"] == got["answer"]["id"]
    assert llm["model"] == "gpt-4o-0613" and llm["provider"] == "openai"
    assert llm["response"]["usage"]["total_tokens"] == 18
    assert llm["metadata"]["environment"] == "test"
    assert llm["metadata"]["customerId"] == "default"


def test_stream_usage_and_responses_api_traces_are_delivered(
    untrace_server: RealServer, mock_llm: MockLLM
) -> None:
    marker = f"stream-{uuid.uuid4()}"
    untrace.init(SERVER_KEY, base_url=untrace_server.url)
    untrace.instrument()
    oai = openai.OpenAI(api_key="sk", base_url=mock_llm.url + "/v1", max_retries=0)
    with oai, untrace.span("request", session_id=marker):
        stream = oai.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert all(chunk.choices for chunk in stream)  # no usage chunk for the caller
        oai.responses.create(
            model="gpt-4o",
            instructions="be brief",
            input=[
                {"role": "user", "content": "weather?"},
                {"type": "function_call_output", "call_id": "call_0", "output": "sunny"},
            ],
        )
    assert untrace.flush(10)
    got = {t["name"]: t for t in untrace_server.wait_for(session_of(marker), 3)}
    assert set(got) == {"request", "openai.chat", "openai.responses"}
    assert got["openai.chat"]["response"]["usage"]["total_tokens"] == 16
    responses = got["openai.responses"]
    assert [m["role"] for m in responses["request"]["messages"]] == ["system", "user", "tool"]
    assert responses["response"]["content"] == "Hello from the mock"
    assert responses["response"]["usage"]["total_tokens"] == 18


def test_large_gzip_batches_are_accepted(untrace_server: RealServer) -> None:
    marker = f"bulk-{uuid.uuid4()}"
    client = Untrace(SERVER_KEY, base_url=untrace_server.url, config=Config(gzip=True))
    for i in range(300):
        client.trace(
            {
                "name": f"bulk{i}",
                "sessionId": marker,
                "kind": "llm",
                "request": {"prompt": "x" * 200},
            }
        )
    assert client.flush(15)
    assert client.stats["sent"] == 300 and client.stats["dropped"] == 0
    got = untrace_server.wait_for(session_of(marker), 300)
    assert len({t["id"] for t in got}) == 300


def test_bad_key_is_counted_not_retried(untrace_server: RealServer) -> None:
    client = Untrace("ut_wrong_key_000000000000", base_url=untrace_server.url)
    client.trace({"name": "nope"})
    assert client.flush(10)
    assert client.stats["dropped.unauthorized"] == 1
    assert client.stats.get("retries", 0) == 0


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, untrace
    untrace.init(sys.argv[1], base_url=sys.argv[2])
    for i in range(50):
        untrace.trace({"name": f"exit-{i}", "sessionId": sys.argv[3]})
    """
)


def test_process_that_exits_while_server_is_slow_still_delivers(
    untrace_server: RealServer,
) -> None:
    marker = f"exit-{uuid.uuid4()}"
    proxy = SlowProxy(untrace_server.url, delay=1.5)
    with serving(proxy.server):
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, SERVER_KEY, proxy.url, marker],
            capture_output=True,
            text=True,
            timeout=30,
        )
        took = time.monotonic() - start
    proxy.close()
    assert result.returncode == 0, result.stderr
    assert took >= 1.5  # it waited for the slow server
    assert proxy.forwarded >= 1
    got = untrace_server.wait_for(session_of(marker), 50)
    assert sorted(t["name"] for t in got) == sorted(f"exit-{i}" for i in range(50))
