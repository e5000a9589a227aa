"""Webhooks: a configured source maps JSONPaths to Trace fields and checks an HMAC
signature; the ``raw`` source keeps the body under metadata."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

import httpx
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, wait_until
from tests.support.sink import WebhookSink

SECRET = "whsec-123"


def test_mapped_signed_and_raw_webhooks(
    server_factory: Callable[..., ServerProcess], sink_factory: Callable[..., WebhookSink]
) -> None:
    sink = sink_factory()
    config = webhook_config(("hook", sink))
    config["receivers"] = {
        "webhooks": {
            "acme": {
                "secret": SECRET,
                "signature_header": "X-Acme-Signature",
                "items": "$.events",
                "provider": "acme-ai",
                "mapping": {
                    "id": "$.event_id",
                    "model": "$.data.model",
                    "session_id": "$.data['session']",
                    "startTime": "$.ts",
                    "request.prompt": "$.data.input",
                    "response.content": "$.data.output",
                    "response.usage.prompt_tokens": "$.data.usage.in",
                    "response.usage.completion_tokens": "$.data.usage.out",
                    "metadata.environment": "$.env",
                },
            }
        }
    }
    server = server_factory(config).start()
    body = json.dumps(
        {
            "events": [
                {
                    "event_id": "wh-1",
                    "ts": 1735732800,
                    "env": "prod",
                    "data": {
                        "model": "acme-1",
                        "session": "s9",
                        "input": "ping",
                        "output": "pong",
                        "usage": {"in": 3, "out": 1},
                    },
                },
                {"event_id": "wh-2", "ts": 1735732801, "data": {"model": "acme-2"}},
            ]
        }
    ).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    url = server.url + "/api/v1/webhooks/acme"
    auth = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
    unsigned = httpx.post(url, content=body, headers=auth)
    assert unsigned.status_code == 401
    forged = httpx.post(url, content=body, headers={**auth, "X-Acme-Signature": "sha256=00"})
    assert forged.status_code == 401
    ok = httpx.post(url, content=body, headers={**auth, "X-Acme-Signature": signature})
    assert ok.status_code == 202 and ok.json()["ids"] == ["wh-1", "wh-2"]
    raw = httpx.post(server.url + "/api/v1/webhooks/raw", json={"anything": [1, 2]}, headers=auth)
    assert raw.status_code == 202
    unknown = httpx.post(server.url + "/api/v1/webhooks/nope", json={}, headers=auth)
    assert unknown.status_code == 404
    assert httpx.post(server.url + "/api/v1/webhooks/raw", json={}).status_code == 401
    assert wait_until(lambda: len(sink.ids()) >= 3, 10), server.log()
    traces = {t["id"]: t for d in sink.deliveries for t in d.traces}
    first = traces["wh-1"]
    assert first["model"] == "acme-1" and first["provider"] == "acme-ai"
    assert first["sessionId"] == "s9" and first["startTime"] == 1735732800000
    assert first["request"]["prompt"] == "ping" and first["response"]["content"] == "pong"
    assert first["response"]["usage"]["prompt_tokens"] == 3
    assert first["metadata"]["environment"] == "prod"
    assert first["metadata"]["webhookSource"] == "acme"
    assert traces["wh-2"]["model"] == "acme-2"
    (raw_trace,) = [t for t in traces.values() if t["metadata"]["webhookSource"] == "raw"]
    assert raw_trace["metadata"]["webhookBody"] == {"anything": [1, 2]}
    assert raw_trace["kind"] == "chain"


def test_bad_webhook_mapping_fails_at_start(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory({"receivers": {"webhooks": {"x": {"mapping": {"id": "event_id"}}}}})
    try:
        server.start(timeout=10)
    except RuntimeError as exc:
        assert "must start with '$'" in str(exc)
    else:
        raise AssertionError("a server with a bad JSONPath started")
