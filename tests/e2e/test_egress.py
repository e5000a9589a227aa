"""The egress policy through a real server: a tenant cannot point a destination (or a
destination test) at the cloud metadata service or, when private networks are blocked,
at the server's own network; what the policy refuses is dead-lettered with the reason,
never sent; allow_cidrs makes exceptions."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, make_trace, wait_until
from tests.support.sink import WebhookSink

ServerFactory = Callable[..., ServerProcess]
SinkFactory = Callable[..., WebhookSink]


def _config(sink: WebhookSink, **egress: object) -> dict[str, object]:
    config = webhook_config(("hook", sink), max_attempts=1)
    config["security"] = {"egress": egress}
    return config


def test_private_destinations_refused_then_allowed(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory()
    server = server_factory(_config(sink, block_private_networks=True)).start()
    h, api = server.headers(), server.url + "/api/v1"
    assert server.post_traces([make_trace(1)]).status_code == 202

    def dead() -> list[dict[str, object]]:
        letters: list[dict[str, object]] = httpx.get(api + "/dlq", headers=h).json()
        return letters

    assert wait_until(lambda: len(dead()) == 1, 15)
    [letter] = dead()
    assert letter["trace_id"] == "t-1"
    assert "refused by the egress policy" in str(letter["error"])
    assert sink.ids() == []

    # a tenant's own destination at the metadata service: the test call reports the refusal
    for dest_id, url in (
        ("metadata", "http://169.254.169.254/latest/meta-data/"),
        ("loopback", sink.url.replace("127.0.0.1", "localhost")),
    ):
        made = httpx.post(
            api + "/destinations",
            json={"id": dest_id, "type": "webhook", "config": {"url": url}},
            headers=h,
        )
        assert made.status_code == 201, made.text
        report = httpx.post(api + f"/destinations/{dest_id}/test", headers=h).json()
        assert report["ok"] is False
        assert "EgressDenied" in report["error"] and "security.egress" in report["error"]
    assert sink.ids() == []
    server.stop()

    # the same sink allowed by CIDR: the dead letter replays and arrives
    config = _config(sink, block_private_networks=True, allow_cidrs=["127.0.0.1/32"])
    server = server_factory(config, name="allowed").start()
    h, api = server.headers(), server.url + "/api/v1"
    assert server.post_traces([make_trace(2)]).status_code == 202
    assert wait_until(lambda: "t-2" in sink.ids(), 15)
    report = httpx.post(api + "/destinations/hook/test", headers=h).json()
    assert report == {"ok": True, "latency_ms": report["latency_ms"], "error": None}


def test_bad_egress_cidr_stops_the_server_at_start(server_factory: ServerFactory) -> None:
    server = server_factory({"security": {"egress": {"allow_cidrs": ["not-a-cidr"]}}})
    with pytest.raises(RuntimeError, match="server exited with 2"):
        server.start(timeout=10)
    assert "security.egress.allow_cidrs: 'not-a-cidr' is not a CIDR" in server.log()
