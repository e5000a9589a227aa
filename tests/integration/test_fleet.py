"""A fleet on real services: two API nodes and two workers sharing a Redis Streams queue
and a PostgreSQL control plane. Traces accepted by either API node are delivered once;
a key created against the shared store works on every node; a killed worker's leased
work is taken over by the other."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from tests.conftest import require_service, webhook_config
from tests.support.server import ServerProcess, make_trace, wait_until
from tests.support.sink import Behaviour, WebhookSink

REDIS_DB = 9
PG = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def fleet_env() -> Iterator[dict[str, str]]:
    try:
        r = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
        r.flushdb()
    except redis.RedisError:
        require_service("Redis at 127.0.0.1:6379")
    db = f"untrace_fleet_{uuid.uuid4().hex[:8]}"
    made = subprocess.run(
        ["psql", f"{PG}/postgres", "-c", f"CREATE DATABASE {db}"], capture_output=True, text=True
    )
    if made.returncode != 0:
        require_service(f"PostgreSQL at 127.0.0.1:5432 ({made.stderr.strip()})")
    yield {
        "UNTRACE_QUEUE__URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "UNTRACE_DATABASE_URL": f"{PG}/{db}",
    }
    r.flushdb()
    r.close()
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
