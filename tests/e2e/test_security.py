"""Security against a running server: secrets never at rest nor in logs, rate limits
with their headers, key rotation with an overlap, JWT service tokens, IP allowlists
behind a trusted proxy."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, make_trace, wait_until
from tests.support.sink import WebhookSink

ServerFactory = Callable[..., ServerProcess]
SinkFactory = Callable[..., WebhookSink]

SECRETS = [
    "sk-lf-SECRET-0f1e2d3c4b5a",
    "whsec-SECRET-99887766",
    "hdr-SECRET-token-5544",
    "sk-proj-PROVIDER-SECRET-1234",
]


def _hits(root: Path, needles: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {n}" for n in needles if n.encode() in data]
    return found


def test_secrets_never_stored_or_logged(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory()
    server = server_factory(webhook_config(("base", sink))).start()
    h, api = server.headers(), server.url + "/api/v1"
    lf_secret, wh_secret, header_secret, provider_key = SECRETS
    r = httpx.post(
        api + "/destinations",
        json={
            "id": "lf",
            "type": "langfuse",
            "config": {
                "public_key": "pk-lf-1",
                "secret_key": lf_secret,
                "endpoint": "http://127.0.0.1:9",
            },
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert r.json()["config"]["secret_key"] == "********"
    r = httpx.post(
        api + "/destinations",
        json={
            "id": "hook",
            "type": "webhook",
            "config": {
                "url": sink.url,
                "secret": wh_secret,
                "headers": {"Authorization": f"Bearer {header_secret}", "X-Team": "a"},
            },
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    shown = httpx.get(api + "/destinations", headers=h).text
    assert not any(s in shown for s in SECRETS) and "X-Team" in shown
    # an update that sends the masked value back keeps the secret
    hook = httpx.get(api + "/destinations/hook", headers=h).json()
    r = httpx.put(
        api + "/destinations/hook", json={k: hook[k] for k in ("type", "config")}, headers=h
    )
    assert r.status_code == 200, r.text
    httpx.put(
        api + "/rules",
        json={"document": {"defaultDestinations": ["base", "hook", "lf"]}},
        headers=h,
    ).raise_for_status()
    assert server.post_traces([make_trace(i) for i in range(10)]).status_code == 202
    # the decrypted secrets are used: the webhook got the real header
    assert wait_until(
        lambda: any(
            d.headers.get("authorization") == f"Bearer {header_secret}" for d in sink.deliveries
        ),
        20,
    )
    # the proxy: a provider key passes through, never stored
    httpx.post(
        server.url + "/openai/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {provider_key}", "X-Untrace-Key": server.key},
        timeout=10,
    )
    time.sleep(1)
    server.stop()
    assert _hits(server.workdir, SECRETS) == []


def test_rate_limit_headers_and_429(server_factory: ServerFactory) -> None:
    server = server_factory({}).start()
    r = httpx.post(
        server.url + "/api/v1/keys",
        headers=server.headers(),
        json={"scopes": ["ingest"], "requests_per_s": 3, "traces_per_s": 5},
    )
    key = r.json()["key"]
    statuses = [server.post_traces([make_trace(i)], key=key) for i in range(5)]
    assert [s.status_code for s in statuses[:3]] == [202, 202, 202]
    assert statuses[0].headers["X-RateLimit-Limit"] in ("3", "5")
    limited = [s for s in statuses if s.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].headers["X-RateLimit-Remaining"] == "0"
    assert limited[0].json()["error"]["type"] == "rate_limited"
    time.sleep(1.1)
    # traces/s: a batch of 6 exceeds 5 traces/s
    r = server.post_traces([make_trace(i) for i in range(6)], key=key)
    assert r.status_code == 429 and "traces/s" in r.json()["error"]["message"]


def test_rotation_overlap_and_revocation(server_factory: ServerFactory) -> None:
    server = server_factory({}).start()
    api = server.url + "/api/v1"
    old = httpx.post(api + "/keys", headers=server.headers(), json={"scopes": ["read"]}).json()
    r = httpx.post(
        f"{api}/keys/{old['id']}/rotate", headers=server.headers(), json={"overlap_s": 2}
    )
    new = r.json()
    assert r.status_code == 201 and new["key"] != old["key"] and new["scopes"] == ["read"]
    for key in (old["key"], new["key"]):  # both work during the overlap
        assert httpx.get(api + "/keys", headers=server.headers(key)).status_code == 200
    time.sleep(2.2)
    assert httpx.get(api + "/keys", headers=server.headers(old["key"])).status_code == 401
    assert httpx.get(api + "/keys", headers=server.headers(new["key"])).status_code == 200
    listed = httpx.get(api + "/keys", headers=server.headers()).json()
    assert all("key" not in k for k in listed)
    assert any(k["id"] == new["id"] and k["last_used_at"] for k in listed)
    httpx.delete(f"{api}/keys/{new['id']}", headers=server.headers()).raise_for_status()
    assert httpx.get(api + "/keys", headers=server.headers(new["key"])).status_code == 401


def test_jwt_service_tokens_and_trusted_proxy(server_factory: ServerFactory) -> None:
    server = server_factory(
        {
            "security": {
                "jwt_secret": "jwt-test-secret-of-at-least-32-bytes!",
                "trusted_proxies": ["127.0.0.1/32"],
            }
        }
    ).start()
    api = server.url + "/api/v1"
    now = int(time.time())
    claims = {
        "iss": "billing",
        "sub": "svc-1",
        "aud": ["untrace"],
        "iat": now,
        "exp": now + 60,
        "permissions": ["read"],
        "customer": "default",
    }
    good = jwt.encode(claims, "jwt-test-secret-of-at-least-32-bytes!", algorithm="HS256")
    assert httpx.get(api + "/keys", headers=server.headers(good)).status_code == 200
    assert httpx.post(api + "/keys", headers=server.headers(good), json={}).status_code == 403
    for bad in (
        jwt.encode(
            {**claims, "exp": now - 10}, "jwt-test-secret-of-at-least-32-bytes!", algorithm="HS256"
        ),
        jwt.encode(claims, "another-secret-of-at-least-32-bytes!!", algorithm="HS256"),
        jwt.encode(
            {**claims, "aud": ["other"]}, "jwt-test-secret-of-at-least-32-bytes!", algorithm="HS256"
        ),
    ):
        assert httpx.get(api + "/keys", headers=server.headers(bad)).status_code == 401
    # an allowlisted key: X-Forwarded-For is believed because the peer is a trusted proxy
    key = httpx.post(
        api + "/keys",
        headers=server.headers(),
        json={"scopes": ["read"], "ip_allowlist": ["198.51.100.0/24"]},
    ).json()["key"]
    ok = {**server.headers(key), "X-Forwarded-For": "6.6.6.6, 198.51.100.7"}
    denied = {**server.headers(key), "X-Forwarded-For": "198.51.100.7, 6.6.6.6"}
    assert httpx.get(api + "/keys", headers=ok).status_code == 200
    assert httpx.get(api + "/keys", headers=denied).status_code == 403
    assert httpx.get(api + "/keys", headers=server.headers(key)).status_code == 403
