"""Fixtures for the SDK tests: local fake servers, and a real ``untrace serve`` in a
subprocess (one per session) that delivers to a JSON Lines file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import untrace
from untrace import _client

# pytest runs with --import-mode=importlib: make this folder's helpers importable.
sys.path.insert(0, str(Path(__file__).parent))
from sdk_fakes import Clients, Collector, MockLLM, serving

SERVER_KEY = "ut_test_0123456789abcdef"
UNTRACE_CLI = Path(sys.executable).parent / "untrace"


@pytest.fixture(autouse=True)
def _clean_sdk_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no default client, no patches, no UNTRACE_* env."""
    for name in ("UNTRACE_API_KEY", "UNTRACE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield
    untrace.uninstrument()
    _shutdown_clients()


def _shutdown_clients() -> None:
    _client._default = None
    for live in list(_client._live):
        live.shutdown(timeout=0.5)


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    with serving(c.server):
        yield c
        _shutdown_clients()  # while the collector still answers


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    m = MockLLM()
    with serving(m.server):
        yield m


@pytest.fixture
def traced(collector: Collector) -> Callable[[], list[dict[str, Any]]]:
    """The default client sends to ``collector``; openai and anthropic instrumented.
    Calling the fixture's value flushes and returns every trace accepted so far."""
    untrace.init("k", base_url=collector.url, flush_interval=30)
    assert untrace.instrument() == ["openai", "anthropic"]

    def get() -> list[dict[str, Any]]:
        assert untrace.flush(5)
        return collector.accepted()

    return get


@pytest.fixture
async def sdk(mock_llm: MockLLM) -> AsyncIterator[Clients]:
    clients = Clients(mock_llm)
    yield clients
    for client in clients.made:
        result = client.close()
        if hasattr(result, "__await__"):
            await result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RealServer:
    def __init__(self, url: str, out: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.out = out
        self.proc = proc
        self.log = log
        self.key = SERVER_KEY

    def delivered(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        # the server may be writing a batch right now: a last line without its newline
        # is not complete yet, read it next time
        complete = self.out.read_text().split("\n")[:-1]
        return [json.loads(line) for line in complete if line.strip()]

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], n: int, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Delivered traces for which ``match`` is true, once there are at least ``n``."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [t for t in self.delivered() if match(t)]
            if len(found) >= n:
                return found
            time.sleep(0.05)
        return found


@pytest.fixture(scope="session")
def untrace_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    if not UNTRACE_CLI.exists():
        pytest.fail(f"{UNTRACE_CLI} missing: run `make setup` to install the server")
    root = tmp_path_factory.mktemp("untrace-server")
    out = root / "out.jsonl"
    config = root / "untrace.yaml"
    config.write_text(
        "customers:\n"
        "  default:\n"
        "    destinations:\n"
        f"      - {{id: out, type: file, config: {{path: {json.dumps(str(out))}}}}}\n"
        "    routing: {defaultDestinations: [out]}\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNTRACE_")}
    env["UNTRACE_BOOTSTRAP_ADMIN_KEY"] = SERVER_KEY
    log = root / "server.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [
                str(UNTRACE_CLI),
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(root / "data"),
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"untrace serve exited {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"untrace serve not ready in 30 s:\n{log.read_text()}")
            time.sleep(0.05)
        yield RealServer(url, out, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
