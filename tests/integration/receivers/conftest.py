"""One real ``untrace serve`` per module, delivering to a recording webhook sink, and a
helper to wait for the traces a test produced (tests tell theirs apart by a unique
marker, so they can share the server)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, wait_until
from tests.support.sink import WebhookSink

Traces = list[dict[str, Any]]


class Recorder:
    def __init__(self, server: ServerProcess, sink: WebhookSink) -> None:
        self.server = server
        self.sink = sink

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def key(self) -> str:
        return self.server.key

    def traces(self) -> Traces:
        with self.sink._lock:
            return [t for d in self.sink.deliveries for t in d.traces]

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], count: int, timeout: float = 15.0
    ) -> Traces:
        """The delivered traces ``match`` selects, once there are ``count`` of them."""
        found: Traces = []

        def enough() -> bool:
            found[:] = [t for t in self.traces() if match(t)]
            return len(found) >= count

        assert wait_until(enough, timeout), (
            f"{len(found)} of {count} traces delivered; log:\n{self.server.log()[-3000:]}"
        )
        return found


def receivers_config(sink: WebhookSink, **receivers: Any) -> dict[str, Any]:
    config = webhook_config(("hook", sink))
    config["receivers"] = receivers
    return config


@contextlib.contextmanager
def open_recorder(workdir: Path, **receivers: Any) -> Iterator[Recorder]:
    sink = WebhookSink()
    server = ServerProcess(workdir, receivers_config(sink, **receivers))
    try:
        server.start()
        yield Recorder(server, sink)
    finally:
        server.stop()
        sink.close()


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    with open_recorder(tmp_path_factory.mktemp("server")) as rec:
        yield rec


def by_meta(key: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda t: t.get("metadata", {}).get(key) == value


@pytest.fixture(scope="module")
def mock_openai() -> Iterator[Any]:
    from tests.integration.receivers.mock_openai import MockOpenAI

    mock = MockOpenAI()
    yield mock
    mock.close()
