"""``GET /api/v1/traces`` and ``untrace traces tail`` against a running server: a
customer's traces in the order they were accepted, paged by cursor, never another
customer's; ``tail --follow`` prints new traces as they are routed."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from collections.abc import Callable

import httpx
from tests.support.server import UNTRACE, ServerProcess, make_trace, wait_until

ServerFactory = Callable[..., ServerProcess]


def _key(server: ServerProcess, customer: str) -> str:
    r = httpx.post(
        server.url + "/api/v1/keys",
        params={"customer": customer},
        headers=server.headers(),
        json={"scopes": ["ingest", "read"]},
    )
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


def _list(server: ServerProcess, key: str, **params: object) -> httpx.Response:
    return httpx.get(server.url + "/api/v1/traces", params=params, headers=server.headers(key))


def test_listing_pages_by_cursor_per_customer(server_factory: ServerFactory) -> None:
    server = server_factory({"delivery": {"max_wait_s": 0.05}}).start()
    acme, globex = _key(server, "acme"), _key(server, "globex")
    for i in range(5):  # interleaved, one request each: the order they were accepted
        assert server.post_traces([make_trace(i, sessionId="s-acme")], key=acme).status_code == 202
        assert server.post_traces([make_trace(100 + i)], key=globex).status_code == 202
    assert wait_until(lambda: len(_list(server, acme, since=0).json()["traces"]) == 5, 15)

    seen, cursor = [], None
    while True:
        params: dict[str, object] = {"since": 0, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = _list(server, acme, **params).json()
        if not page["traces"]:
            break
        assert len(page["traces"]) <= 2
        seen += page["traces"]
        cursor = page["cursor"]
    assert [t["id"] for t in seen] == [f"t-{i}" for i in range(5)]
    first = seen[0]
    assert first["provider"] == "openai" and first["session_id"] == "s-acme"
    assert first["trace"] is None and first["accepted_at"] > 0
    assert [t["id"] for t in _list(server, globex, since=0).json()["traces"]] == [
        f"t-{100 + i}" for i in range(5)
    ]
    full = _list(server, acme, since=0, limit=1, full="true").json()["traces"][0]
    assert full["trace"]["id"] == "t-0" and full["trace"]["metadata"]["customerId"] == "acme"

    bad = _list(server, acme, cursor="not-a-cursor")
    assert bad.status_code == 422 and "cursor" in bad.json()["error"]["message"]
    assert _list(server, acme, limit=0).status_code == 422
    no_read = httpx.post(
        server.url + "/api/v1/keys", headers=server.headers(), json={"scopes": ["ingest"]}
    ).json()["key"]
    assert _list(server, no_read).status_code == 403


def test_tail_follows_new_traces(server_factory: ServerFactory) -> None:
    server = server_factory({"delivery": {"max_wait_s": 0.05}}).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNTRACE_")}
    env["UNTRACE_KEY"] = server.key
    assert server.post_traces([make_trace(1), make_trace(2)]).status_code == 202
    assert wait_until(lambda: len(_list(server, server.key).json()["traces"]) == 2, 15)

    once = subprocess.run(
        [UNTRACE, "traces", "tail", "--url", server.url, "--no-follow", "--json"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert once.returncode == 0, once.stderr
    assert [json.loads(line)["id"] for line in once.stdout.splitlines()] == ["t-1", "t-2"]

    tail = subprocess.Popen(
        [UNTRACE, "traces", "tail", "--url", server.url, "--interval", "0.2", "--since", "0s"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert tail.stdout is not None and tail.stderr is not None
    threading.Thread(target=lambda: [lines.put(line) for line in tail.stdout], daemon=True).start()
    try:
        assert "watching traces accepted since" in tail.stderr.readline()  # it has polled
        trace = make_trace(3, sessionId="s-tail")
        trace["response"]["usage"] = {"total_tokens": 42}
        assert server.post_traces([trace]).status_code == 202
        line = lines.get(timeout=20)
        assert "t-3" in line and "openai/" in line and "42 tok" in line
        assert "session=s-tail" in line
        assert lines.empty()  # t-1 and t-2 came before --since
    finally:
        tail.terminate()
        tail.wait(timeout=10)
        tail.stdout.close()
        tail.stderr.close()
