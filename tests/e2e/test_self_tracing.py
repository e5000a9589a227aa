"""Self-tracing: with ``tracing.endpoint`` set, the server sends its own spans over
OTLP/HTTP — a SERVER span per request continuing the caller's ``traceparent``, one per
routed batch and one per delivery batch with its outcome — to a local collector that
decodes them with the official protobuf definitions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, make_trace, wait_until
from tests.support.sink import QuietHTTPServer, WebhookSink

ServerFactory = Callable[..., ServerProcess]
SinkFactory = Callable[..., WebhookSink]


def _value(v: AnyValue) -> Any:
    return getattr(v, v.WhichOneof("value") or "string_value")


class Collector:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for rs in request.resource_spans:
                    resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                    collector.resources.append(resource)
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            collector.spans.append(
                                {
                                    "name": s.name,
                                    "trace_id": s.trace_id.hex(),
                                    "parent": s.parent_span_id.hex(),
                                    "kind": s.kind,
                                    "status": (s.status.code, s.status.message),
                                    "attrs": {a.key: _value(a.value) for a in s.attributes},
                                }
                            )
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def named(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["name"] == name]


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()
    c.server.server_close()


def test_spans_for_requests_routing_and_delivery(
    server_factory: ServerFactory, sink_factory: SinkFactory, collector: Collector
) -> None:
    sink = sink_factory()
    config = webhook_config(("hook", sink), max_attempts=5, backoff_initial_s=30)
    config["customers"]["default"]["destinations"].append(
        {"id": "down", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}
    )
    config["customers"]["default"]["routing"]["defaultDestinations"].append("down")
    config["tracing"] = {"endpoint": collector.url, "service_name": "untrace-test"}
    server = server_factory(config, env={"OTEL_BSP_SCHEDULE_DELAY": "100"}).start()

    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {**server.headers(), "traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"}
    response = httpx.post(
        server.url + "/api/v1/traces", json={"traces": [make_trace(1), make_trace(2)]},
        headers=headers,
    )  # fmt: skip
    assert response.status_code == 202
    assert wait_until(lambda: {"t-1", "t-2"} <= set(sink.ids()), 15)
    assert wait_until(
        lambda: any(s["attrs"].get("untrace.destination") == "default/down"
                    for s in collector.named("untrace.deliver"))
        and any(s["attrs"].get("untrace.destination") == "default/hook"
                for s in collector.named("untrace.deliver")),
        15,
    )  # fmt: skip

    [ingest] = [s for s in collector.named("POST /api/v1/traces") if s["trace_id"] == caller_trace]
    assert ingest["parent"] == "00f067aa0ba902b7"  # continues the caller's trace
    assert ingest["kind"] == 2  # SERVER
    assert ingest["attrs"]["http.response.status_code"] == 202
    assert ingest["attrs"]["http.route"] == "/api/v1/traces"

    routed = collector.named("untrace.route")
    assert sum(s["attrs"]["untrace.batch.size"] for s in routed) >= 2
    assert sum(s["attrs"]["untrace.routes"] for s in routed) >= 4  # 2 traces to 2 destinations

    deliveries = collector.named("untrace.deliver")
    hook = [s for s in deliveries if s["attrs"]["untrace.destination"] == "default/hook"]
    down = [s for s in deliveries if s["attrs"]["untrace.destination"] == "default/down"]
    assert all(s["attrs"]["untrace.outcome"] == "success" for s in hook)
    assert sum(s["attrs"]["untrace.batch.size"] for s in hook) >= 2
    assert down[0]["attrs"]["untrace.outcome"] == "error"
    assert down[0]["status"][0] == 2 and "ConnectError" in down[0]["status"][1]  # ERROR
    assert all(r["service.name"] == "untrace-test" for r in collector.resources)
    assert all(r["untrace.role"] == "all" for r in collector.resources)
