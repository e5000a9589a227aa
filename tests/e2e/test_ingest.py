"""Native ingest from outside: bad input gets the documented status and a JSON error that
names the problem, nothing is written, and the server keeps serving. Keys from the CLI."""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, make_trace, wait_until
from tests.support.sink import WebhookSink

URL = "/api/v1/traces"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, WebhookSink]]:
    sink = WebhookSink()
    config = webhook_config(("hook", sink))
    config["ingest"] = {
        "max_body_bytes": 200_000,
        "max_trace_bytes": 50_000,
        "max_traces_per_request": 50,
    }
    server = ServerProcess(tmp_path_factory.mktemp("ingest"), config).start()
    yield server, sink
    server.stop()
    sink.close()


def post(
    server: ServerProcess, content: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    hdrs = server.headers() if headers is None else headers
    return httpx.post(server.url + URL, content=content, headers=hdrs, timeout=10)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"type", "message", "details"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


BAD_CASES = [
    ("malformed json", b'{"traces": [', None, 400, "malformed"),
    ("not an object", b"[1, 2]", None, 422, "invalid_trace"),
    ("traces not a list", b'{"traces": 5}', None, 422, "invalid_trace"),
    ("empty batch", b'{"traces": []}', None, 422, "invalid_trace"),
]


@pytest.mark.parametrize(
    ("name", "body", "headers", "status", "type_"), BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_malformed_bodies(
    env: tuple[ServerProcess, WebhookSink],
    name: str,
    body: bytes,
    headers: Any,
    status: int,
    type_: str,
) -> None:
    server, _ = env
    response = post(server, body)
    assert response.status_code == status
    assert error_of(response)["type"] == type_


def test_batch_with_invalid_items_is_rejected_whole_with_details(
    env: tuple[ServerProcess, WebhookSink],
) -> None:
    server, _ = env
    good = make_trace(1, id="never-1")
    wrong_type = make_trace(2, id="never-2", startTime="yesterday")
    missing = make_trace(3, id="never-3")
    del missing["endTime"]
    bad_tags = make_trace(4, id="never-4", metadata={"tags": {"team": 5}})
    response = post(server, json.dumps({"traces": [good, wrong_type, missing, bad_tags]}).encode())
    assert response.status_code == 422
    err = error_of(response)
    assert "nothing was accepted" in err["message"]
    details = {(d["index"], d["field"]) for d in err["details"]}
    assert details == {(1, "startTime"), (2, "endTime"), (3, "metadata.tags")}
    problems = {d["index"]: d["problem"] for d in err["details"]}
    assert "int" in problems[1] and "str" in problems[1]
    assert problems[2] == "required field is missing"


def test_size_limits(env: tuple[ServerProcess, WebhookSink]) -> None:
    server, _ = env
    huge = post(server, b'{"traces": [' + b" " * 250_000 + b"]}")
    assert huge.status_code == 413 and error_of(huge)["type"] == "payload_too_large"
    # over the per-trace limit with its bulk in numbers, not text: cannot be cut to fit
    numbers = make_trace(1, id="never-big")
    numbers["request"]["parameters"]["embedding"] = [0.123456789] * 6_000
    r = post(server, json.dumps({"traces": [make_trace(2, id="never-small"), numbers]}).encode())
    assert r.status_code == 413
    [detail] = error_of(r)["details"]
    assert detail["index"] == 1 and "its bulk is not text" in detail["problem"]
    many = post(server, json.dumps({"traces": [make_trace(i) for i in range(51)]}).encode())
    assert many.status_code == 413 and "limit is 50" in error_of(many)["message"]
    bomb = gzip.compress(b'{"traces": [' + b" " * 1_000_000 + b"]}")
    r = post(server, bomb, {**server.headers(), "Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_content_type_and_encoding(env: tuple[ServerProcess, WebhookSink]) -> None:
    server, _ = env
    body = json.dumps(make_trace(1, id="never-ct")).encode()
    r = post(server, body, {**server.headers(), "Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in error_of(r)["message"]
    r = post(server, body, {**server.headers(), "Content-Encoding": "br"})
    assert r.status_code == 415
    r = post(server, b"not gzip", {**server.headers(), "Content-Encoding": "gzip"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer utk_nope_nope_nope"}, 401),
        ({"Authorization": "Basic abc"}, 401),
    ],
    ids=["no key", "unknown key", "wrong scheme"],
)
def test_auth_failures(
    env: tuple[ServerProcess, WebhookSink], headers: dict[str, str], status: int
) -> None:
    server, _ = env
    r = post(
        server,
        json.dumps(make_trace(1, id="never-auth")).encode(),
        {"Content-Type": "application/json", **headers},
    )
    assert r.status_code == status
    assert error_of(r)["type"] == "unauthorized"


def test_cli_keys_expiry_and_scopes(env: tuple[ServerProcess, WebhookSink]) -> None:
    server, _ = env
    made = server.cli(
        "keys", "create", "--customer", "default", "--scopes", "ingest", "--expires-in", "2s"
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("utk_")
    body = json.dumps(make_trace(1, id="via-cli-key")).encode()
    assert post(server, body, server.headers(key)).status_code == 202
    time.sleep(2.1)
    expired = post(
        server, json.dumps(make_trace(1, id="never-expired")).encode(), server.headers(key)
    )
    assert expired.status_code == 401 and "expired" in error_of(expired)["message"]

    read_only = server.cli("keys", "create", "--customer", "default", "--scopes", "read")
    ro_key = read_only.stdout.strip().splitlines()[-1]
    r = post(server, json.dumps(make_trace(1, id="never-ro")).encode(), server.headers(ro_key))
    assert r.status_code == 403 and error_of(r)["type"] == "forbidden"

    bad = server.cli("keys", "create", "--customer", "x", "--scopes", "root")
    assert bad.returncode == 2
    listing = server.cli("keys", "list")
    assert key[:12] in listing.stdout and key not in listing.stdout
    # only a keyed hash is stored: the plaintext key is nowhere in the store
    raw = b"".join(p.read_bytes() for p in Path(server.data_dir).glob("control.db*"))
    assert key.encode() not in raw and ro_key.encode() not in raw
    with sqlite3.connect(server.data_dir / "control.db") as db:
        hashes = [row[0] for row in db.execute("SELECT hash FROM api_keys")]
    assert all(len(h) == 64 for h in hashes)


def test_nothing_written_by_bad_requests_and_server_keeps_serving(
    env: tuple[ServerProcess, WebhookSink],
) -> None:
    server, sink = env
    # runs after the cases above (file order): only the accepted traces ever arrive
    good = server.post_traces([make_trace(7, id="the-good-one")])
    assert good.status_code == 202
    assert wait_until(lambda: "the-good-one" in sink.ids(), 10)
    time.sleep(0.3)
    assert sorted(sink.ids()) == ["the-good-one", "via-cli-key"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    assert httpx.get(server.url + "/ready").status_code == 200


def test_single_trace_and_generated_id(env: tuple[ServerProcess, WebhookSink]) -> None:
    server, sink = env
    trace = make_trace(1)
    del trace["id"]
    r = post(server, json.dumps(trace).encode())
    assert r.status_code == 202
    (new_id,) = r.json()["ids"]
    assert len(new_id) == 36 and new_id[14] == "7"  # a UUIDv7
    assert wait_until(lambda: new_id in sink.ids(), 10)


def test_oversized_trace_is_cut_to_fit_not_refused(env: tuple[ServerProcess, WebhookSink]) -> None:
    """Over max_trace_bytes (50,000 here) with its bulk in text: the longest strings are
    cut, marked and listed, and the trace is accepted and delivered."""
    server, sink = env
    image = "data:image/png;base64," + "iVBORw0KGgo" * 4_000  # 44 KB of base64
    trace = make_trace(8, id="cut-to-fit", response={"content": "é" * 30_000})
    trace["request"]["messages"] = [
        {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                     {"type": "image_url", "image_url": {"url": image}}]},
    ]  # fmt: skip
    body = json.dumps({"traces": [trace]}, ensure_ascii=False).encode()
    assert 100_000 < len(body) < 200_000  # over the trace limit, within the body limit
    r = post(server, body)
    assert r.status_code == 202, r.text
    assert wait_until(lambda: "cut-to-fit" in sink.ids(), 10)
    [got] = [t for d in sink.deliveries for t in d.traces if t["id"] == "cut-to-fit"]
    size = len(json.dumps(got, ensure_ascii=False).encode())
    assert 40_000 < size <= 50_000 + 2_000  # cut near the limit (routing adds a little)
    assert sorted(got["metadata"]["truncatedFields"]) == [
        "request.messages[0].content[1].image_url.url",
        "response.content",
    ]
    content = got["response"]["content"]
    assert content.startswith("ééé") and content.endswith(" chars]")
    cut = int(content.rsplit("[truncated ", 1)[1].split(" ")[0])
    assert cut + len(content.split("…[truncated")[0]) == 30_000  # the count is exact
    parts = got["request"]["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "what is this?"}  # short strings stay whole
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    assert got["model"] == "gpt-4o-mini" and got["metadata"]["customerId"] == "default"
