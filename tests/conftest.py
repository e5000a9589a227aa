"""Shared fixtures: a real server process factory and local webhook sinks, cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess
from tests.support.sink import WebhookSink
from tests.support.tools import unavailable


@pytest.fixture
def sink_factory() -> Iterator[Callable[..., WebhookSink]]:
    sinks: list[WebhookSink] = []

    def make(**kw: Any) -> WebhookSink:
        sink = WebhookSink(**kw)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def make(
        config: dict[str, Any] | None = None, name: str = "server", **kw: Any
    ) -> ServerProcess:
        server = ServerProcess(tmp_path / name, config, **kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def webhook_config(*sinks: tuple[str, WebhookSink], **delivery: Any) -> dict[str, Any]:
    """A config with one webhook destination per (id, sink), all default destinations."""
    config: dict[str, Any] = {
        "customers": {
            "default": {
                "destinations": [
                    {
                        "id": dest_id,
                        "type": "webhook",
                        "config": {
                            "url": sink.url,
                            **({"secret": sink.secret} if sink.secret else {}),
                        },
                    }
                    for dest_id, sink in sinks
                ],
                "routing": {"defaultDestinations": [dest_id for dest_id, _ in sinks]},
            }
        },
        "delivery": {"max_wait_s": 0.05, **delivery},
    }
    return config


def require_service(name: str) -> None:
    """Skip locally when a service is missing; under CI=true, fail instead."""
    unavailable(f"{name} is not reachable")
