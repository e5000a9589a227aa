"""The proxy driven from outside: its own failures (unreachable upstream, breaker, read
timeout) in the provider's error shape, a client that goes away mid-stream, a queue that
cannot take the trace, and the provider key nowhere but upstream."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from tests.conftest import webhook_config
from tests.integration.proxy.conftest import ANTHROPIC_KEY, PROVIDER_KEY
from tests.integration.proxy.mock_upstream import MockUpstream
from tests.support.server import ServerProcess, free_port, wait_until
from tests.support.sink import WebhookSink

MESSAGES = [{"role": "user", "content": "hi"}]


class Env:
    def __init__(self, server: ServerProcess, sink: WebhookSink, upstream: MockUpstream) -> None:
        self.server, self.sink, self.upstream = server, sink, upstream

    def headers(self, session: str) -> dict[str, str]:
        return {"X-Untrace-Key": self.server.key, "X-Untrace-Session-Id": session}

    def traces(self, session: str) -> list[dict[str, Any]]:
        with self.sink._lock:
            return [t for d in self.sink.deliveries for t in d.traces if t["sessionId"] == session]

    def wait_trace(self, session: str) -> dict[str, Any]:
        assert wait_until(lambda: self.traces(session), 15), self.server.log()[-2000:]
        return self.traces(session)[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    upstream = MockUpstream().start()
    sink = WebhookSink()
    config = webhook_config(("hook", sink))
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    config["customers"]["default"]["proxy"] = {"anthropic_base_url": dead}
    config["proxy"] = {
        "read_timeout_s": 0.5,
        "breaker_failures": 2,
        "breaker_reset_s": 30,
        "connect_retries": 1,
    }
    server = ServerProcess(
        tmp_path_factory.mktemp("proxy-e2e"),
        config,
        env={
            "UNTRACE_OPENAI_BASE_URL": upstream.url,
            "UNTRACE_ANTHROPIC_BASE_URL": upstream.url,  # overridden for customer default
            "UNTRACE_LOG_LEVEL": "debug",
        },
    )
    server.start()
    try:
        yield Env(server, sink, upstream)
    finally:
        server.stop()
        sink.close()
        upstream.stop()


def test_unreachable_upstream_502_then_breaker_503(env: Env) -> None:
    client = anthropic.Anthropic(
        api_key=ANTHROPIC_KEY,
        base_url=env.server.url + "/anthropic",
        default_headers=env.headers("s-dead"),
        max_retries=0,
    )
    with client:
        statuses = []
        for _ in range(3):
            with pytest.raises(anthropic.APIStatusError) as info:
                client.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)
            statuses.append(info.value.status_code)
            body = info.value.body
            assert isinstance(body, dict) and body["type"] == "error"
        assert statuses == [502, 502, 503]
        assert body["error"]["type"] == "upstream_circuit_open"
        assert int(info.value.response.headers["retry-after"]) >= 1
    trace = env.wait_trace("s-dead")
    assert trace["error"]["type"] in ("upstream_unavailable", "upstream_circuit_open")
    assert trace["request"]["messages"] == MESSAGES


def test_upstream_timeout_before_headers_is_504(env: Env) -> None:
    with openai.OpenAI(
        api_key=PROVIDER_KEY,
        base_url=env.server.url + "/openai/v1",
        default_headers=env.headers("s-hang"),
        max_retries=0,
    ) as client:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="hang-2000", messages=MESSAGES)
    assert info.value.status_code == 504
    assert time.monotonic() - started < 1.9
    assert info.value.body["type"] == "upstream_timeout"  # type: ignore[index]
    assert env.wait_trace("s-hang")["error"]["type"] == "upstream_timeout"


def test_stalled_stream_ends_and_trace_is_partial(env: Env) -> None:
    with openai.OpenAI(
        api_key=PROVIDER_KEY,
        base_url=env.server.url + "/openai/v1",
        default_headers=env.headers("s-stall"),
        max_retries=0,
    ) as client:
        stream = client.chat.completions.create(model="slow-2000", messages=MESSAGES, stream=True)
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    trace = env.wait_trace("s-stall")
    assert trace["metadata"]["partial"] is True
    assert trace["error"]["type"] == "upstream_timeout"


def test_client_disconnect_mid_stream_yields_partial_trace(env: Env) -> None:
    body = {"model": "slow-150", "messages": MESSAGES, "stream": True}
    headers = {**env.headers("s-gone"), "Authorization": f"Bearer {PROVIDER_KEY}"}
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", env.server.url + "/openai/v1/chat/completions", json=body, headers=headers
        ) as response,
    ):
        seen = b""
        for chunk in response.iter_bytes():
            seen += chunk
            if b'"Hello"' in seen:
                break  # leave mid-stream
    trace = env.wait_trace("s-gone")
    assert trace["metadata"]["partial"] is True
    assert trace["response"]["content"].startswith("Hello")
    assert trace["response"]["content"] != "Hello from the mock upstream."
    assert "error" not in trace


def test_missing_or_bad_untrace_key_is_401_and_nothing_sent(env: Env) -> None:
    before = len(env.upstream.requests)
    url = env.server.url + "/openai/v1/chat/completions"
    for headers in ({}, {"X-Untrace-Key": "utk_nope"}):
        r = httpx.post(url, json={"model": "m"}, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "unauthorized"
    assert len(env.upstream.requests) == before


def test_provider_key_is_nowhere_but_upstream(env: Env) -> None:
    """Runs last in the module: every call above carried a provider key."""
    session = "s-keys"
    with openai.OpenAI(
        api_key=PROVIDER_KEY,
        base_url=env.server.url + "/openai/v1",
        default_headers=env.headers(session),
        max_retries=0,
    ) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    env.wait_trace(session)
    secrets = [PROVIDER_KEY, ANTHROPIC_KEY, "PROVIDERKEY"]
    assert not any(s in env.server.log() for s in secrets)
    for path in Path(env.server.data_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets), path
    with env.sink._lock:
        delivered = repr([(d.traces, d.headers) for d in env.sink.deliveries])
    assert not any(s in delivered for s in secrets)
    assert re.search(r"upstream", env.server.log())  # the log did record the failures


def test_queue_that_cannot_take_traces_drops_and_counts(
    tmp_path: Path, server_factory: Any
) -> None:
    upstream = MockUpstream().start()
    try:
        server = server_factory(
            {"queue": {"budget_bytes": 1}},
            env={"UNTRACE_OPENAI_BASE_URL": upstream.url},
        ).start()
        with openai.OpenAI(
            api_key=PROVIDER_KEY,
            base_url=server.url + "/openai/v1",
            default_headers={"X-Untrace-Key": server.key},
            max_retries=0,
        ) as client:
            for _ in range(3):
                reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                assert reply.choices[0].message.content == "Hello from the mock upstream."

        def dropped() -> float:
            text = httpx.get(server.url + "/metrics").text
            found = re.search(
                r'untrace_dropped_total\{reason="queue_full",where="proxy"\} (\S+)', text
            )
            return float(found.group(1)) if found else 0.0

        assert wait_until(lambda: dropped() >= 3, 10)
    finally:
        upstream.stop()
