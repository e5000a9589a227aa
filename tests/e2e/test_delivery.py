"""The core guarantees, driven from outside: a real server process, real HTTP, real
SQLite, local webhook sinks as destinations."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, free_port, make_trace, wait_until
from tests.support.sink import Behaviour, WebhookSink

ServerFactory = Callable[..., ServerProcess]
SinkFactory = Callable[..., WebhookSink]


def test_thousand_traces_arrive_exactly_once(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory(secret="s3cr3t")
    server = server_factory(webhook_config(("hook", sink))).start()
    sent: list[str] = []
    for batch in range(10):
        traces = [
            make_trace(batch * 100 + i, metadata={"customerId": "mallory"}) for i in range(100)
        ]
        response = server.post_traces(traces)
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["accepted"] == 100
        sent.extend(body["ids"])
    assert set(sent) == {f"t-{i}" for i in range(1000)}
    assert wait_until(lambda: len(sink.ids()) >= 1000, 30), len(sink.ids())
    time.sleep(0.5)  # anything extra would show up now
    counts = sink.id_counts()
    assert set(counts) == set(sent)
    assert max(counts.values()) == 1
    assert sink.problems == []  # content type, shape and HMAC signature all checked
    delivered = [t for d in sink.deliveries for t in d.traces]
    # the customer comes from the key, never from the body
    assert {t["metadata"]["customerId"] for t in delivered} == {"default"}
    assert delivered[0]["request"]["messages"][0]["role"] == "user"
    metrics = httpx.get(server.url + "/metrics").text
    delivered_line = (
        'untrace_traces_processed_total{customer_id="default",destination="hook",'
        'status="delivered"} 1000.0'
    )
    assert delivered_line in metrics
    assert (
        'untrace_api_requests_total{endpoint="/api/v1/traces",method="POST",status="202"} 10.0'
        in metrics
    )


def test_kill_9_loses_no_accepted_trace(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory(behaviour=Behaviour(delay_s=0.3))
    server = server_factory(webhook_config(("hook", sink), max_batch=20)).start()
    accepted: list[str] = []
    stop = threading.Event()

    def client() -> None:
        n = 0
        with httpx.Client(timeout=5.0) as http:
            while not stop.is_set():
                traces = [make_trace(n + i) for i in range(25)]
                n += 25
                try:
                    r = http.post(
                        server.url + "/api/v1/traces",
                        json={"traces": traces},
                        headers=server.headers(),
                    )
                except httpx.HTTPError:
                    continue
                if r.status_code == 202:
                    accepted.extend(r.json()["ids"])
                time.sleep(0.01)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(2.0)
    server.kill9()
    time.sleep(0.3)
    stop.set()
    thread.join(10)
    delivered_before = len(set(sink.ids()))
    assert len(accepted) > 100
    assert delivered_before < len(accepted), "the slow webhook should have left a backlog"

    sink.behaviour = Behaviour()
    restarted = ServerProcess(server.workdir, server.config, port=server.port).start()
    try:
        assert wait_until(lambda: set(accepted) <= set(sink.ids()), 60), (
            f"{len(set(accepted) - set(sink.ids()))} accepted traces never arrived"
        )
    finally:
        restarted.stop()
    counts = sink.id_counts()
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    print(
        f"\nkill -9: {len(accepted)} accepted, {delivered_before} delivered before the kill, "
        f"all delivered after restart; {duplicates} duplicate deliveries"
    )


def test_server_errors_are_retried_with_backoff(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory(behaviour=Behaviour(status=500))
    config = webhook_config(
        ("hook", sink),
        backoff_initial_s=0.25,
        backoff_multiplier=2.0,
        jitter=0.0,
        breaker_failures=100,
    )
    server = server_factory(config).start()
    assert server.post_traces([make_trace(1)]).status_code == 202
    assert wait_until(lambda: len(sink.attempts) >= 4, 10)
    sink.behaviour = Behaviour(status=200)
    assert wait_until(lambda: sink.ids() == ["t-1"], 10)
    failures = [t for t, status in sink.attempts if status == 500]
    gaps = [b - a for a, b in itertools.pairwise(failures)]
    # 0.25 s doubling: each gap at least the schedule, and growing
    for i, gap in enumerate(gaps[:3]):
        assert gap >= 0.25 * 2**i * 0.95, gaps
    assert gaps[2] > gaps[0] * 2.5, gaps


def test_retry_after_is_honoured(server_factory: ServerFactory, sink_factory: SinkFactory) -> None:
    sink = sink_factory(behaviour=Behaviour(status=429, retry_after="3"))
    config = webhook_config(("hook", sink), backoff_initial_s=0.1, jitter=0.0)
    server = server_factory(config).start()
    assert server.post_traces([make_trace(1)]).status_code == 202
    assert wait_until(lambda: len(sink.attempts) >= 1, 10)
    first = sink.attempts[0][0]
    sink.behaviour = Behaviour(status=200)
    assert wait_until(lambda: sink.ids() == ["t-1"], 10)
    second = sink.attempts[1][0]
    assert second - first >= 2.95, second - first


def test_bad_request_goes_to_dlq_and_replays(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory(behaviour=Behaviour(status=400))
    server = server_factory(webhook_config(("hook", sink))).start()
    assert server.post_traces([make_trace(1), make_trace(2)]).status_code == 202
    assert wait_until(lambda: len(sink.attempts) >= 1, 10)
    time.sleep(1.0)
    assert len(sink.attempts) == 1, "a permanent error must not be retried"
    listing = server.cli("dlq", "list")
    assert listing.returncode == 0, listing.stderr
    assert "t-1" in listing.stdout and "t-2" in listing.stdout and "400" in listing.stdout
    assert "2 dead letters" in listing.stdout

    sink.behaviour = Behaviour(status=200)
    replay = server.cli("dlq", "replay", "--destination", "default/hook")
    assert replay.returncode == 0 and "replayed 2" in replay.stdout, replay.stdout + replay.stderr
    assert wait_until(lambda: sorted(sink.ids()) == ["t-1", "t-2"], 10)
    assert "0 dead letters" in server.cli("dlq", "list").stdout


def test_broken_destination_does_not_delay_another(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    slow = sink_factory(behaviour=Behaviour(delay_s=5.0))
    fast = sink_factory()
    down_url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    config = webhook_config(("slow", slow), ("fast", fast))
    config["customers"]["default"]["destinations"].append(
        {"id": "down", "type": "webhook", "config": {"url": down_url}}
    )
    config["customers"]["default"]["routing"]["defaultDestinations"].append("down")
    server = server_factory(config).start()
    for round_ in range(3):
        started = time.monotonic()
        assert server.post_traces([make_trace(round_)]).status_code == 202
        assert wait_until(lambda r=round_: f"t-{r}" in fast.ids(), 5)
        assert time.monotonic() - started < 1.5
    assert slow.ids() == []  # still stuck in its first slow request


def test_restart_while_destination_down_loses_nothing(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory(behaviour=Behaviour(status=503))
    config = webhook_config(
        ("hook", sink), backoff_initial_s=0.2, backoff_max_s=1.0, breaker_reset_s=1.0
    )
    server = server_factory(config).start()
    for batch in range(3):
        r = server.post_traces([make_trace(batch * 50 + i) for i in range(50)])
        assert r.status_code == 202
    assert wait_until(lambda: len(sink.attempts) >= 2, 10)
    took = server.terminate()
    assert took < 10
    sink.behaviour = Behaviour()
    restarted = ServerProcess(server.workdir, server.config, port=server.port).start()
    try:
        assert wait_until(lambda: set(sink.ids()) == {f"t-{i}" for i in range(150)}, 20)
    finally:
        restarted.stop()


def test_sigterm_under_load_exits_in_grace_and_keeps_everything(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory(behaviour=Behaviour(delay_s=0.2))
    server = server_factory(
        webhook_config(("hook", sink), max_batch=10), env={"UNTRACE_SHUTDOWN_GRACE_S": "3"}
    ).start()
    accepted: list[str] = []
    stop = threading.Event()

    def client() -> None:
        n = 0
        with httpx.Client(timeout=5.0) as http:
            while not stop.is_set():
                try:
                    r = http.post(
                        server.url + "/api/v1/traces",
                        json={"traces": [make_trace(n + i) for i in range(20)]},
                        headers=server.headers(),
                    )
                except httpx.HTTPError:
                    break
                n += 20
                if r.status_code == 202:
                    accepted.extend(r.json()["ids"])

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(1.5)
    took = server.terminate()
    stop.set()
    thread.join(10)
    assert took < 3 + 2, f"exit took {took:.1f}s with a 3s grace period"
    assert len(accepted) > 0
    sink.behaviour = Behaviour()
    restarted = ServerProcess(server.workdir, server.config, port=server.port).start()
    try:
        assert wait_until(lambda: set(accepted) <= set(sink.ids()), 30)
    finally:
        restarted.stop()


def test_queue_budget_full_answers_503_with_retry_after(
    server_factory: ServerFactory, sink_factory: SinkFactory
) -> None:
    sink = sink_factory(behaviour=Behaviour(status=503))
    server = server_factory(
        webhook_config(("hook", sink)),
        # the backlog guard off: here the one destination's outbox is to fill the budget
        env={"UNTRACE_QUEUE__BUDGET_BYTES": "400000", "UNTRACE_DELIVERY__MAX_BACKLOG_SHARE": "1"},
    ).start()
    statuses: list[int] = []
    last: Any = None
    for batch in range(40):
        last = server.post_traces([make_trace(batch * 20 + i) for i in range(20)])
        statuses.append(last.status_code)
        if last.status_code != 202:
            break
    assert statuses[-1] == 503, statuses
    assert last.headers["retry-after"].isdigit()
    assert last.json()["error"]["type"] == "queue_full"
    assert httpx.get(server.url + "/health").status_code == 200
