"""A fleet on real services: two API nodes and two workers sharing a queue — Redis
Streams or NATS JetStream — and a PostgreSQL control plane. Traces accepted by either API
node are delivered once; a key created against the shared store works on every node; a
killed worker's leased work is taken over by the other."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import nats
import nats.errors
import nats.js.errors
import pytest
import redis
from tests.conftest import require_service, webhook_config
from tests.support.server import ServerProcess, make_trace, wait_until
from tests.support.sink import Behaviour, WebhookSink

REDIS_DB = 9
NATS_URL = "nats://127.0.0.1:4222"
PG = "postgresql://postgres@127.0.0.1:5432"


@contextlib.contextmanager
def redis_queue() -> Iterator[str]:
    try:
        r = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
        r.flushdb()
    except redis.RedisError:
        require_service("Redis at 127.0.0.1:6379")
    try:
        yield f"redis://127.0.0.1:6379/{REDIS_DB}"
    finally:
        r.flushdb()
        r.close()


async def _delete_streams(name: str) -> int:
    """Delete the queue's streams; how many traces its traces stream retained."""
    nc = await nats.connect(NATS_URL, max_reconnect_attempts=1, connect_timeout=2)
    retained = 0
    try:
        jsm = nc.jsm()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            retained = (await jsm.stream_info(f"{name}-traces")).state.messages
        for kind in ("traces", "outbox", "dead"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await jsm.delete_stream(f"{name}-{kind}")
    finally:
        await nc.close()
    return retained


@contextlib.contextmanager
def nats_queue() -> Iterator[str]:
    """A NATS queue URL with streams of its own, deleted afterwards (the nodes make them)."""
    name = f"untrace-fleet-{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_delete_streams(name))  # also: is NATS there?
    except (nats.errors.Error, OSError):
        require_service("NATS at 127.0.0.1:4222")
    try:
        yield f"{NATS_URL}?stream={name}"
    finally:
        retained = asyncio.run(_delete_streams(name))
    # the nodes did use these streams: accepted traces stay there after their ack
    assert retained > 0, f"NATS stream {name}-traces was never written"


@pytest.fixture(params=["redis", "nats"])
def fleet_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    queue = redis_queue() if request.param == "redis" else nats_queue()
    with queue as queue_url:
        db = f"untrace_fleet_{uuid.uuid4().hex[:8]}"
        made = subprocess.run(
            ["psql", f"{PG}/postgres", "-c", f"CREATE DATABASE {db}"],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            require_service(f"PostgreSQL at 127.0.0.1:5432 ({made.stderr.strip()})")
        yield {"UNTRACE_QUEUE__URL": queue_url, "UNTRACE_DATABASE_URL": f"{PG}/{db}"}
        subprocess.run(
            ["psql", f"{PG}/postgres", "-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"],
            capture_output=True,
        )


def test_two_api_nodes_and_two_workers_deliver_everything_once(
    fleet_env: dict[str, str],
    server_factory: Callable[..., ServerProcess],
    sink_factory: Callable[..., WebhookSink],
) -> None:
    sink = sink_factory(behaviour=Behaviour(delay_s=0.05))
    config = webhook_config(("hook", sink), max_batch=20, visibility_s=3)
    config["worker"] = {"visibility_s": 3}  # bounds how long a dead worker's leases last
    workers = [
        server_factory(
            config, name=f"worker{i}", env={**fleet_env, "UNTRACE_ROLE": "worker"}
        ).start()
        for i in range(2)
    ]
    apis = [
        server_factory(config, name=f"api{i}", env={**fleet_env, "UNTRACE_ROLE": "api"}).start()
        for i in range(2)
    ]
    # a key made on one node's store is valid on every node: the control plane is shared
    made = apis[0].cli("keys", "create", "--customer", "default", "--scopes", "ingest")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]

    sent: list[str] = []
    for batch in range(10):
        api = apis[batch % 2]
        traces = [make_trace(batch * 50 + i) for i in range(50)]
        response = api.post_traces(traces, key=key)
        assert response.status_code == 202, response.text
        sent.extend(response.json()["ids"])
        if batch == 4:
            workers[0].kill9()  # its leased work comes back to the other worker
    assert wait_until(lambda: set(sink.ids()) == set(sent), 30), (
        f"{len(set(sent) - set(sink.ids()))} traces missing"
    )
    counts = sink.id_counts()
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    print(
        f"\nfleet: {len(sent)} accepted on 2 API nodes, all delivered; "
        f"{duplicates} redelivered after a worker was killed"
    )
    # API nodes do not deliver: nothing but the workers ever called the webhook
    for api in apis:
        metrics = httpx.get(api.url + "/metrics").text
        assert (
            'untrace_traces_processed_total{customer_id="default",destination="hook",status="delivered"}'
            not in metrics
        )
    assert httpx.get(apis[1].url + "/ready").status_code == 200


def test_trace_status_and_backfill_answer_on_every_node(
    fleet_env: dict[str, str],
    server_factory: Callable[..., ServerProcess],
    sink_factory: Callable[..., WebhookSink],
) -> None:
    """The status of a trace and a backfill job, asked of the API node that did not
    accept the trace or start the job (Redis keeps per-trace status records; NATS keeps
    none and says so with 501)."""
    old, new = sink_factory(), sink_factory()
    config = webhook_config(("old", old), ("new", new))
    config["customers"]["default"]["routing"]["defaultDestinations"] = ["old"]
    server_factory(config, name="worker", env={**fleet_env, "UNTRACE_ROLE": "worker"}).start()
    apis = [
        server_factory(config, name=f"api{i}", env={**fleet_env, "UNTRACE_ROLE": "api"}).start()
        for i in range(2)
    ]
    started = time.time() - 1
    assert apis[0].post_traces([make_trace(i) for i in range(30)]).status_code == 202
    assert wait_until(lambda: len(set(old.ids())) == 30, 20)
    h = apis[0].headers()
    # backfill "new" with what went to "old" only: route to both, replay the range to "new"
    rules = {"document": {"defaultDestinations": ["old", "new"]}}
    assert httpx.put(apis[0].url + "/api/v1/rules", json=rules, headers=h).status_code == 200
    status = httpx.get(apis[1].url + "/api/v1/traces/t-7", headers=h)
    replay = httpx.post(
        apis[0].url + "/api/v1/replay", json={"destination": "new", "since": started}, headers=h
    )
    if fleet_env["UNTRACE_QUEUE__URL"].startswith("nats"):
        assert status.status_code == 501 and replay.status_code == 501
        return
    assert status.status_code == 200, status.text
    assert status.json()["ingest"] == "processed"
    assert [(d["destination"], d["state"]) for d in status.json()["deliveries"]] == [
        ("old", "delivered")
    ]
    assert replay.status_code == 202, replay.text
    job = f"{apis[1].url}/api/v1/replay/{replay.json()['id']}"  # asked of the other node
    assert wait_until(lambda: httpx.get(job, headers=h).json()["state"] == "done", 20)
    assert httpx.get(job, headers=h).json()["published"] == 30
    assert wait_until(lambda: len(set(new.ids())) == 30, 20)
    assert sorted(new.id_counts().values()) == [1] * 30
