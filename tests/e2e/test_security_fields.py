"""Field-level encryption at rest (security.encrypt_fields) against a running server:
the configured fields never reach the queue files in plaintext, the destination gets
them back in plaintext, and rules see only ciphertext."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
from tests.conftest import require_service, webhook_config
from tests.support.server import UNTRACE, ServerProcess, make_trace, wait_until
from tests.support.sink import WebhookSink

ServerFactory = Callable[..., ServerProcess]
SinkFactory = Callable[..., WebhookSink]

EMAIL = "alice.secret-user@example.org"
QUESTION = "my card number is 4111-PLAINTEXT-QUESTION"
PROFILE = {"plan": "enterprise-PLAINTEXT-PROFILE", "seats": 42}
FIELDS = ["metadata.user_email", "metadata.profile", "request.messages[*].content"]
NEEDLES = [EMAIL, "4111-PLAINTEXT-QUESTION", "PLAINTEXT-PROFILE"]


def _queue_hits(data_dir: Path) -> list[str]:
    found = []
    for path in data_dir.glob("queue.db*"):
        data = path.read_bytes()
        found += [f"{path.name}: {n}" for n in NEEDLES if n.encode() in data]
    return found


def _trace(i: int) -> dict[str, Any]:
    trace = make_trace(i)
    trace["metadata"].update(user_email=EMAIL, profile=dict(PROFILE))  # encrypted in place
    trace["request"]["messages"] = [{"role": "user", "content": QUESTION}]
    return trace


def test_encrypted_fields_at_rest_plaintext_delivered(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory()
    config = webhook_config(("hook", sink))
    config["security"] = {"encrypt_fields": FIELDS}
    # a rule on the encrypted content never matches; its existence still does
    config["customers"]["default"]["routing"]["rules"] = [
        {
            "id": "by-email",
            "name": "by email",
            "priority": 1,
            "conditions": {
                "all": [{"field": "$.metadata.user_email", "operator": "eq", "value": EMAIL}]
            },
            "actions": {"destinations": ["hook"], "metadata": {"matched": "content"}},
        },
    ]
    server = server_factory(config).start()
    assert server.post_traces([_trace(i) for i in range(5)]).status_code == 202
    assert wait_until(lambda: sum(len(d.traces) for d in sink.deliveries) >= 5, 20)
    delivered = [t for d in sink.deliveries for t in d.traces]
    assert sorted(t["id"] for t in delivered) == [f"t-{i}" for i in range(5)]
    for t in delivered:
        assert t["metadata"]["user_email"] == EMAIL
        assert t["metadata"]["profile"] == PROFILE  # the type comes back, not a string
        assert t["request"]["messages"][0]["content"] == QUESTION
        assert t["response"]["content"].startswith("answer")  # other fields untouched
        assert "matched" not in t["metadata"]
    files = list(server.data_dir.glob("queue.db*"))
    assert files and _queue_hits(server.data_dir) == []  # while running: db and WAL
    # the management API shows what is stored: ciphertext
    status = httpx.get(server.url + "/api/v1/traces/t-0", headers=server.headers())
    assert status.status_code == 200 and EMAIL not in status.text
    server.stop()
    assert _queue_hits(server.data_dir) == []  # after the WAL checkpoint at shutdown
    assert not any(n in server.log() for n in NEEDLES)


def test_fields_stay_encrypted_through_retries_and_dead_letters(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory()
    sink.behaviour.status = 503
    config = webhook_config(("hook", sink), backoff_initial_s=0.05, max_attempts=2)
    config["security"] = {"encrypt_fields": FIELDS}
    server = server_factory(config).start()
    assert server.post_traces([_trace(0)]).status_code == 202
    dlq = server.url + "/api/v1/dlq"
    assert wait_until(lambda: httpx.get(dlq, headers=server.headers()).json(), 20, 0.2)
    assert EMAIL not in httpx.get(dlq, headers=server.headers()).text
    assert _queue_hits(server.data_dir) == []
    sink.behaviour.status = 200
    r = httpx.post(dlq + "/replay", json={"all": True}, headers=server.headers())
    assert r.status_code in (200, 202), r.text
    assert wait_until(lambda: bool(sink.deliveries), 20)
    assert sink.deliveries[0].traces[0]["metadata"]["user_email"] == EMAIL


def test_bad_field_path_refused_at_startup(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UNTRACE_")}
    for path, reason in (
        ("response.usage.total_tokens", "not a string"),
        ("metadata.customerId", "cannot be encrypted"),
        ("request.mesages[*].content", "no field 'mesages'"),
    ):
        config = tmp_path / "untrace.yaml"
        config.write_text(f"security:\n  encrypt_fields: ['{path}']\n")
        proc = subprocess.run(
            [UNTRACE, "serve", "--config", str(config), "--data-dir", str(tmp_path / "d")],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean,
        )
        assert proc.returncode == 2, proc.stderr
        assert reason in proc.stderr and "encrypt_fields" in proc.stderr
    # a fleet node must share the master key: API nodes encrypt what workers decrypt
    config.write_text("security:\n  encrypt_fields: ['metadata.user_email']\n")
    proc = subprocess.run(
        [UNTRACE, "serve", "--role", "api", "--config", str(config), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean,
    )
    assert proc.returncode == 2 and "UNTRACE_MASTER_KEY" in proc.stderr, proc.stderr


def test_destination_added_through_the_api_gets_plaintext(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory()
    server = server_factory({"security": {"encrypt_fields": FIELDS}}).start()
    api, h = server.url + "/api/v1", server.headers()
    r = httpx.post(
        api + "/destinations",
        json={"id": "late", "type": "webhook", "config": {"url": sink.url}},
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = httpx.put(api + "/rules", json={"document": {"defaultDestinations": ["late"]}}, headers=h)
    assert r.status_code in (200, 201), r.text
    assert server.post_traces([_trace(3)]).status_code == 202
    assert wait_until(lambda: bool(sink.deliveries), 20)
    assert sink.deliveries[0].traces[0]["metadata"]["user_email"] == EMAIL
    assert _queue_hits(server.data_dir) == []


def test_cipher_round_trip_and_tampering(tmp_path: Path) -> None:
    from untrace_server import model
    from untrace_server.control.crypto import load_keyring
    from untrace_server.control.fields import FieldCipher

    keyring = load_keyring(None, [], tmp_path)
    cipher = FieldCipher(
        keyring,
        ["metadata.*", "request.messages[0].content", "request.parameters.user", "error.message"],
    )
    original = _trace(1) | {"error": {"type": "E", "message": "for " + EMAIL}}
    original["metadata"] |= {"forged": "enc:v1:abc:not-ours", "absent": None, "customerId": "acme"}
    original["request"]["messages"].append({"role": "assistant", "content": "kept"})
    trace = cipher.encrypt(model.from_builtins(original))
    encoded = model.encode(trace)
    assert not any(n.encode() in encoded for n in NEEDLES) and b"kept" in encoded
    assert trace.metadata["absent"] is None  # nothing to hide
    # metadata.* never takes what the service relies on
    assert trace.metadata["customerId"] == "acme" and trace.metadata["tags"] == {"suite": "e2e"}
    assert model.to_builtins(cipher.decode(encoded)) == model.to_builtins(
        model.from_builtins(original)
    )
    # a value tampered with in the queue is sent as it is, never as a wrong plaintext
    tampered = model.decode(encoded)
    value = tampered.metadata["user_email"]
    tampered.metadata["user_email"] = value[:-6] + ("A" if value[-6] != "A" else "B") + value[-5:]
    out = cipher.decrypt(tampered)
    assert out.metadata["user_email"].startswith("enc:v1:")
    assert out.metadata["profile"] == PROFILE
    # overlapping paths, in either order, unwind to the plaintext
    for fields, hidden in (
        (["metadata.profile.plan", "metadata.profile"], "PLAINTEXT-PROFILE"),
        (["metadata.profile", "metadata.profile.plan"], "PLAINTEXT-PROFILE"),
        (["metadata.*", "metadata.user_email"], EMAIL),
    ):
        both, plain = FieldCipher(keyring, fields), _trace(2)
        sealed = model.encode(both.encrypt(model.from_builtins(copy.deepcopy(plain))))
        assert hidden.encode() not in sealed
        assert model.to_builtins(both.decode(sealed)) == plain


def test_fields_encrypted_in_redis_streams(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    """The same at rest in a fleet queue: the Redis streams hold only ciphertext."""
    url = "redis://127.0.0.1:6379/13"  # a database of its own, emptied after
    client: Any = redis.Redis.from_url(url)  # redis-py types its replies loosely
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        require_service("Redis at 127.0.0.1:6379")
    sink = sink_factory()
    config = webhook_config(("hook", sink))
    config["security"] = {"encrypt_fields": FIELDS}
    config["queue"] = {"url": url}
    server = server_factory(config).start()
    try:
        assert server.post_traces([_trace(i) for i in range(3)]).status_code == 202
        assert wait_until(lambda: sum(len(d.traces) for d in sink.deliveries) >= 3, 20)
        assert all(t["metadata"]["user_email"] == EMAIL for d in sink.deliveries for t in d.traces)
        stored = b"".join(
            b"".join(k + v for k, v in fields.items())
            for key in client.scan_iter(match="untrace:*")
            if client.type(key) == b"stream"
            for _, fields in client.xrange(key)
        )
        assert b"enc:v1:" in stored  # the retained traces are there, encrypted
        assert not any(n.encode() in stored for n in NEEDLES)
    finally:
        server.stop()
        for key in client.scan_iter(match="untrace:*"):
            client.delete(key)
        client.close()
