"""One mock upstream and one real ``untrace serve`` (proxy in front of the mock,
delivering to a recording webhook sink) per module. Tests tell their traces apart by a
unique ``X-Untrace-Session-Id``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from tests.conftest import webhook_config
from tests.integration.proxy.mock_upstream import MockUpstream
from tests.support.server import ServerProcess, wait_until
from tests.support.sink import WebhookSink

PROVIDER_KEY = "sk-test-PROVIDERKEY-9f8e7d6c5b4a"
ANTHROPIC_KEY = "sk-ant-test-PROVIDERKEY-1a2b3c"


class ProxyEnv:
    def __init__(
        self, upstream: MockUpstream, server: ServerProcess, sink: WebhookSink, azure_key: str
    ) -> None:
        self.upstream = upstream
        self.server = server
        self.sink = sink
        self.azure_key = azure_key  # customer "azure", whose OpenAI upstream is Azure-shaped
        self.clients: list[Any] = []  # sync SDK clients, closed after each test

    def session(self) -> str:
        return "s-" + uuid.uuid4().hex

    def untrace_headers(self, session: str, **extra: str) -> dict[str, str]:
        return {"X-Untrace-Key": self.server.key, "X-Untrace-Session-Id": session, **extra}

    def openai(self, session: str, *, direct: bool = False, **kw: Any) -> openai.OpenAI:
        base = self.upstream.url if direct else self.server.url + "/openai/v1"
        headers = {} if direct else self.untrace_headers(session, **kw)
        client = openai.OpenAI(
            api_key=PROVIDER_KEY, base_url=base, default_headers=headers, max_retries=0
        )
        self.clients.append(client)
        return client

    def async_openai(self, session: str, *, direct: bool = False) -> openai.AsyncOpenAI:
        base = self.upstream.url if direct else self.server.url + "/openai/v1"
        headers = {} if direct else self.untrace_headers(session)
        return openai.AsyncOpenAI(
            api_key=PROVIDER_KEY, base_url=base, default_headers=headers, max_retries=0
        )

    def anthropic(self, session: str, *, direct: bool = False) -> anthropic.Anthropic:
        base = self.upstream.url.removesuffix("/v1") if direct else self.server.url + "/anthropic"
        headers = {} if direct else self.untrace_headers(session)
        client = anthropic.Anthropic(
            api_key=ANTHROPIC_KEY, base_url=base, default_headers=headers, max_retries=0
        )
        self.clients.append(client)
        return client

    def async_anthropic(self, session: str, *, direct: bool = False) -> anthropic.AsyncAnthropic:
        base = self.upstream.url.removesuffix("/v1") if direct else self.server.url + "/anthropic"
        headers = {} if direct else self.untrace_headers(session)
        return anthropic.AsyncAnthropic(
            api_key=ANTHROPIC_KEY, base_url=base, default_headers=headers, max_retries=0
        )

    def traces(self, session: str) -> list[dict[str, Any]]:
        with self.sink._lock:
            return [
                t for d in self.sink.deliveries for t in d.traces if t.get("sessionId") == session
            ]

    def wait_traces(self, session: str, count: int = 1, timeout: float = 15.0) -> list[Any]:
        ok = wait_until(lambda: len(self.traces(session)) >= count, timeout)
        assert ok, f"{len(self.traces(session))}/{count} traces; log:\n{self.server.log()[-3000:]}"
        return self.traces(session)


@pytest.fixture(scope="module")
def proxy_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyEnv]:
    upstream = MockUpstream().start()
    sink = WebhookSink()
    workdir: Path = tmp_path_factory.mktemp("proxy")
    config = webhook_config(("hook", sink))
    config["customers"]["azure"] = {
        **config["customers"]["default"],
        "proxy": {"openai_base_url": upstream.url.removesuffix("/v1") + "/openai"},
    }
    server = ServerProcess(
        workdir,
        config,
        env={
            "UNTRACE_OPENAI_BASE_URL": upstream.url,
            "UNTRACE_ANTHROPIC_BASE_URL": upstream.url,
            "UNTRACE_LOG_LEVEL": "debug",
        },
    )
    server.start()
    made = httpx.post(
        server.url + "/api/v1/keys",
        params={"customer": "azure"},  # an admin key acts for the customer it names
        headers=server.headers(),
        json={"scopes": ["proxy"]},
    )
    assert made.status_code == 201, made.text
    try:
        yield ProxyEnv(upstream, server, sink, made.json()["key"])
    finally:
        server.stop()
        sink.close()
        upstream.stop()


@pytest.fixture(autouse=True)
def _close_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "proxy_env" in request.fixturenames:
        env: ProxyEnv = request.getfixturevalue("proxy_env")
        while env.clients:
            env.clients.pop().close()
