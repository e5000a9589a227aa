"""One destination down for long must not stall the others through the disk: its outbox
is capped at its share of the queue budget, past which new deliveries for it are shed
(counted), while ingest keeps answering 202 and the healthy destination gets everything;
once it is back, a replay of the range sends it exactly what it missed."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, make_trace, wait_until
from tests.support.sink import Behaviour, WebhookSink

ServerFactory = Callable[..., ServerProcess]
SinkFactory = Callable[..., WebhookSink]


def _metric(server: ServerProcess, pattern: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    return sum(float(m) for m in re.findall(pattern + r" ([0-9.e+]+)", text))


def test_a_down_destination_is_capped_and_replayed_after(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    healthy, broken = sink_factory(), sink_factory(behaviour=Behaviour(status=503))
    config = webhook_config(
        ("healthy", healthy), ("broken", broken),
        max_attempts=1000, backoff_initial_s=0.5, backoff_max_s=1, breaker_reset_s=0.5,
        breaker_failures=1,  # failing from its first answer: shedding does not wait on timing
        max_backlog_share=0.05,
    )  # fmt: skip
    config["queue"] = {"budget_bytes": 20_000_000}  # the broken outbox may hold ~1 MB
    server = server_factory(config).start()
    started = time.time() - 1
    ids: list[str] = []
    for batch in range(20):
        traces = [make_trace(batch * 100 + i) for i in range(100)]
        for t in traces:
            t["response"]["content"] = "x" * 1500  # ~2 KB a trace
        response = server.post_traces(traces)
        assert response.status_code == 202, response.text  # ingest never stalls
        ids += response.json()["ids"]
    assert wait_until(lambda: set(ids) <= set(healthy.ids()), 30)
    assert sorted(healthy.id_counts().values()) == [1] * len(ids)

    shed = _metric(server, r'untrace_dropped_total\{reason="backlog_full",where="worker"\}')
    assert 0 < shed < len(ids)  # ~500 queued (1 MB), the rest shed
    depth = _metric(server, r'untrace_queue_depth\{topic="deliver.default/broken"\}')
    assert depth <= len(ids) - shed + 1

    broken.behaviour = Behaviour()  # it is back: its outbox drains, then a replay
    h, api = server.headers(), server.url + "/api/v1"
    assert wait_until(lambda: len(set(broken.ids())) >= len(ids) - shed, 30)
    job = httpx.post(api + "/replay", json={"destination": "broken", "since": started}, headers=h)
    assert job.status_code == 202, job.text
    assert wait_until(
        lambda: httpx.get(f"{api}/replay/{job.json()['id']}", headers=h).json()["state"] == "done",
        30,
    )
    assert wait_until(lambda: set(ids) <= set(broken.ids()), 30)
    done = httpx.get(f"{api}/replay/{job.json()['id']}", headers=h).json()
    assert done["published"] == shed and done["skipped"] == len(ids) - shed
    assert "untrace replay --destination broken" in server.log()
