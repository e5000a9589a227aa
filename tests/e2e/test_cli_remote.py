"""``untrace keys|dlq --url … --key …``: the CLI against a running server, from a
directory with no data dir of its own (nothing local is read or created)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.conftest import webhook_config
from tests.support.server import UNTRACE, ServerProcess, make_trace, wait_until
from tests.support.sink import WebhookSink

ServerFactory = Callable[..., ServerProcess]
SinkFactory = Callable[..., WebhookSink]


def _remote(
    cwd: Path, server: ServerProcess, key: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNTRACE_")}
    env["UNTRACE_KEY"] = key  # the key from the environment, the URL as a flag
    return subprocess.run(
        [UNTRACE, *args, "--url", server.url],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _ingest(server: ServerProcess, key: str) -> int:
    return server.post_traces([make_trace(7)], key=key).status_code


def test_keys_through_the_api(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory({}).start()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    made = _remote(
        elsewhere, server, server.key, "keys", "create", "--customer", "acme",
        "--scopes", "ingest,read", "--name", "ci", "--expires-in", "1d",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    acme_key = made.stdout.strip()
    assert acme_key.startswith("utk_") and "shown only once" in made.stderr
    assert _ingest(server, acme_key) == 202
    # acme's own key lists acme's keys only; the admin key can list acme's too
    own = _remote(elsewhere, server, acme_key, "keys", "list")
    assert own.returncode == 0, own.stderr
    assert acme_key[:12] in own.stdout and "bootstrap" not in own.stdout
    assert "default" not in own.stdout and "acme" in own.stdout
    listed = _remote(elsewhere, server, server.key, "keys", "list", "--customer", "acme")
    assert acme_key[:12] in listed.stdout
    key_id = next(
        k["id"]
        for k in httpx.get(
            server.url + "/api/v1/keys", params={"customer": "acme"}, headers=server.headers()
        ).json()
    )
    # rotate with no overlap: the new key works, the old one stops at once
    rotated = _remote(
        elsewhere, server, server.key, "keys", "rotate", key_id, "--overlap", "0s",
        "--customer", "acme",
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.strip()
    assert new_key != acme_key and _ingest(server, new_key) == 202
    assert wait_until(lambda: _ingest(server, acme_key) == 401, 5, 0.2)
    new_id = next(
        k["id"]
        for k in httpx.get(server.url + "/api/v1/keys", headers=server.headers(new_key)).json()
        if k["revoked_at"] is None and (k["expires_at"] or 0) > k["created_at"] + 60
    )
    revoked = _remote(elsewhere, server, server.key, "keys", "revoke", new_id, "--customer", "acme")
    assert revoked.returncode == 0 and f"revoked {new_id}" in revoked.stdout
    assert _ingest(server, new_key) == 401
    # a revoked key: the API answer as one readable line, exit 1
    other = _remote(elsewhere, server, new_key, "keys", "revoke", "nope")
    assert other.returncode == 1 and "error 401" in other.stderr
    # --url without a key is refused before any request
    bare = subprocess.run(
        [UNTRACE, "keys", "list", "--url", server.url],
        env={k: v for k, v in os.environ.items() if not k.startswith("UNTRACE_")},
        capture_output=True, text=True, timeout=30, cwd=elsewhere,
    )  # fmt: skip
    assert bare.returncode == 2 and "--key" in bare.stderr
    assert list(elsewhere.iterdir()) == []  # no local store was opened


def test_dlq_through_the_api(
    server_factory: ServerFactory, sink_factory: SinkFactory, tmp_path: Path
) -> None:
    sink = sink_factory()
    sink.behaviour.status = 400  # permanent: straight to the dead-letter queue
    server = server_factory(webhook_config(("hook", sink))).start()
    here = tmp_path / "elsewhere"
    here.mkdir()
    assert server.post_traces([make_trace(1), make_trace(2)]).status_code == 202

    def dead_count() -> int:
        return len(httpx.get(server.url + "/api/v1/dlq", headers=server.headers()).json())

    assert wait_until(lambda: dead_count() == 2, 20, 0.1)
    listed = _remote(here, server, server.key, "dlq", "list", "--destination", "default/hook")
    assert listed.returncode == 0, listed.stderr
    assert "t-1" in listed.stdout and "t-2" in listed.stdout and "2 dead letters" in listed.stdout
    assert "permanent" in listed.stdout
    # nothing targeted: the API's rule holds, and the CLI says so
    untargeted = _remote(here, server, server.key, "dlq", "replay")
    assert untargeted.returncode == 1 and "all=true" in untargeted.stderr
    letter = httpx.get(server.url + "/api/v1/dlq", headers=server.headers()).json()[0]
    sink.behaviour.status = 200
    replayed = _remote(here, server, server.key, "dlq", "replay", "--id", letter["id"])
    assert replayed.returncode == 0 and "replayed 1 dead letters" in replayed.stdout
    assert wait_until(
        lambda: [t["id"] for d in sink.deliveries for t in d.traces] == [letter["trace_id"]], 20
    )
    purged = _remote(here, server, server.key, "dlq", "purge", "--all")
    assert purged.returncode == 0 and "purged 1 dead letters" in purged.stdout
    assert dead_count() == 0
    assert "0 dead letters" in _remote(here, server, server.key, "dlq", "list").stdout
    assert list(here.iterdir()) == []


def test_offline_purge(server_factory: ServerFactory, sink_factory: SinkFactory) -> None:
    sink = sink_factory()
    sink.behaviour.status = 400
    server = server_factory(webhook_config(("hook", sink))).start()
    assert server.post_traces([make_trace(1)]).status_code == 202
    assert wait_until(lambda: "1 dead letters" in server.cli("dlq", "list").stdout, 20, 0.2)
    refused = server.cli("dlq", "purge")
    assert refused.returncode == 2
    purged = server.cli("dlq", "purge", "--destination", "default/hook")
    assert purged.returncode == 0 and "purged 1 dead letters" in purged.stdout, purged.stderr
    assert "0 dead letters" in server.cli("dlq", "list").stdout


def test_destinations_offline_against_the_local_store(
    server_factory: Callable[..., ServerProcess], sink_factory: Callable[..., WebhookSink]
) -> None:
    """Without --url the destinations commands work on the local store, with the same
    rules as the API, and a running server picks the change up."""
    sink = sink_factory()
    server = server_factory({"customers": {"default": {"destinations": [
        {"id": "filed", "type": "file", "config": {"path": "filed.jsonl"}}],
        "routing": {"defaultDestinations": ["filed"]}}}}).start()  # fmt: skip
    created = server.cli(
        "destinations", "create", "--customer", "default", "--id", "hook", "--type", "webhook",
        "--config-json", json.dumps({"url": sink.url, "secret": "hunter2-secret"}),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "hunter2-secret" not in created.stdout  # masked
    listed = json.loads(server.cli("destinations", "list", "--customer", "default").stdout)
    assert {(d["id"], d["source"]) for d in listed} == {("filed", "file"), ("hook", "api")}
    invalid = server.cli("destinations", "create", "--customer", "default", "--id", "bad",
                         "--type", "webhook", "--config-json", '{"url": "not a url"}')  # fmt: skip
    assert invalid.returncode == 1 and "url" in invalid.stderr
    gitops = server.cli("destinations", "delete", "filed", "--customer", "default")
    assert gitops.returncode == 1 and "config file" in gitops.stderr
    # the running server routes to it once the rules name it
    api = ("--url", server.url, "--key", server.key)
    rules = server.workdir / "r.yaml"
    rules.write_text(json.dumps({"defaultDestinations": ["hook"]}))
    assert server.cli("rules", "apply", "-f", str(rules), *api).returncode == 0
    assert wait_until(lambda: server.post_traces([make_trace(1)]).status_code == 202
                      and "t-1" in sink.ids(), 15)  # fmt: skip
    in_use = server.cli("destinations", "delete", "hook", "--customer", "default")
    assert in_use.returncode == 1 and "routing" in in_use.stderr
