"""The management API against a running server: backfill of a new destination by
replay, trace status per destination, and the dead-letter queue."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

import httpx
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, make_trace, wait_until
from tests.support.sink import WebhookSink

ServerFactory = Callable[..., ServerProcess]
SinkFactory = Callable[..., WebhookSink]


def test_backfill_reaches_new_destination_once(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    old, new = sink_factory(), sink_factory()
    server = server_factory(webhook_config(("old", old))).start()
    started = time.time() - 1
    assert server.post_traces([make_trace(i) for i in range(20)]).status_code == 202
    assert wait_until(lambda: len(old.ids()) >= 20, 20)
    h = server.headers()
    api = server.url + "/api/v1"
    r = httpx.post(
        api + "/destinations",
        json={"id": "new", "type": "webhook", "config": {"url": new.url}},
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = httpx.put(
        api + "/rules", json={"document": {"defaultDestinations": ["old", "new"]}}, headers=h
    )
    assert r.status_code == 200, r.text
    # traces sent before "new" existed: the replay of their time range sends them there
    r = httpx.post(api + "/replay", json={"destination": "new", "since": started}, headers=h)
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    assert wait_until(
        lambda: httpx.get(f"{api}/replay/{job}", headers=h).json()["state"] == "done", 10
    )
    progress = httpx.get(f"{api}/replay/{job}", headers=h).json()
    assert progress["published"] == 20 and progress["scanned"] >= 20
    assert wait_until(lambda: len(new.ids()) >= 20, 20)
    # a second replay of the same range skips what the destination already has
    r = httpx.post(api + "/replay", json={"destination": "new", "since": started}, headers=h)
    assert wait_until(
        lambda: httpx.get(f"{api}/replay/{r.json()['id']}", headers=h).json()["state"] == "done",
        10,
    )
    again = httpx.get(f"{api}/replay/{r.json()['id']}", headers=h).json()
    assert again["published"] == 0 and again["skipped"] == 20
    time.sleep(1.5)
    assert sorted(new.id_counts().values()) == [1] * 20  # each exactly once
    assert sorted(old.id_counts().values()) == [1] * 20  # the old one got nothing again
    status = httpx.get(api + "/traces/t-3", headers=h).json()
    states = {d["destination"]: d["state"] for d in status["deliveries"]}
    assert states == {"old": "delivered", "new": "delivered"}
    assert status["ingest"] == "processed"

    # jobs live in the control store: after a restart (or on another node of a fleet)
    # they are still there; one whose node stopped writing long ago shows as interrupted
    server.stop()
    stale = {**progress, "id": "f" * 32, "state": "running", "finished_at": None}
    with sqlite3.connect(server.data_dir / "control.db") as db:
        db.execute(
            "INSERT INTO replay_jobs (id, customer_id, job, updated_at) VALUES (?, ?, ?, ?)",
            (stale["id"], "default", json.dumps(stale), time.time() - 3600),
        )
    server.start()
    assert httpx.get(f"{api}/replay/{job}", headers=h).json() == progress
    assert httpx.get(f"{api}/replay/{'f' * 32}", headers=h).json()["state"] == "interrupted"
    listed = httpx.get(f"{api}/replay", headers=h).json()
    assert [j["id"] for j in listed] == [r.json()["id"], job, "f" * 32]  # newest first
    other = httpx.post(
        api + "/keys", params={"customer": "acme"}, headers=h, json={"scopes": ["read"]}
    ).json()["key"]
    assert httpx.get(f"{api}/replay/{job}", headers=server.headers(other)).status_code == 404
    assert httpx.get(f"{api}/replay", headers=server.headers(other)).json() == []


def test_trace_status_and_dead_letters(server_factory: ServerFactory) -> None:
    config = {
        "customers": {
            "default": {
                "destinations": [
                    {"id": "down", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}
                ],
                "routing": {"defaultDestinations": ["down"]},
            }
        },
        "delivery": {"max_wait_s": 0.05, "max_attempts": 2, "backoff_initial_s": 0.2},
    }
    server = server_factory(config).start()
    h, api = server.headers(), server.url + "/api/v1"
    assert server.post_traces([make_trace(1), make_trace(2)]).status_code == 202

    def state() -> str:
        body = httpx.get(api + "/traces/t-1", headers=h).json()
        return body["deliveries"][0]["state"] if body.get("deliveries") else ""

    assert wait_until(lambda: state() == "dead", 20)
    [delivery] = httpx.get(api + "/traces/t-1", headers=h).json()["deliveries"]
    assert delivery["attempts"] == 2 and "ConnectError" in (delivery["last_error"] or "")
    letters = httpx.get(api + "/dlq", params={"destination": "down"}, headers=h).json()
    assert {d["trace_id"] for d in letters} == {"t-1", "t-2"}
    assert httpx.get(api + "/dlq", params={"error": "no-such-text"}, headers=h).json() == []
    r = httpx.post(api + "/dlq/replay", json={"ids": [letters[0]["id"]]}, headers=h)
    assert r.json() == {"count": 1}
    assert httpx.post(api + "/dlq/replay", json={}, headers=h).status_code == 422
    assert wait_until(lambda: len(httpx.get(api + "/dlq", headers=h).json()) == 2, 20)
    r = httpx.post(api + "/dlq/purge", json={"all": True}, headers=h)
    assert r.json() == {"count": 2}
    assert httpx.get(api + "/dlq", headers=h).json() == []
    assert httpx.get(api + "/traces/nope", headers=h).status_code == 404
