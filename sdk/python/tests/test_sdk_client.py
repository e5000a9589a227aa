"""The client against a local recording collector: batching, gzip, retries, drops."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from sdk_fakes import Collector, Reply

import untrace
from untrace import Config, Untrace

pytestmark = pytest.mark.timeout(30)


def make(collector: Collector, **cfg: Any) -> Untrace:
    cfg.setdefault("initial_backoff", 0.05)
    return Untrace("ut_key", base_url=collector.url, config=Config(**cfg))


def test_trace_fills_id_times_and_sends_gzip_with_bearer_key(collector: Collector) -> None:
    client = make(collector)
    trace_id = client.trace({"name": "one", "kind": "llm", "model": "m"})
    assert client.flush(5)
    [req] = collector.requests
    assert req["path"] == "/api/v1/traces"
    assert req["auth"] == "Bearer ut_key"
    assert req["encoding"] == "gzip"
    [trace] = req["traces"]
    assert trace["id"] == trace_id and len(trace_id) == 36
    assert isinstance(trace["startTime"], int) and trace["endTime"] == trace["startTime"]
    assert abs(trace["startTime"] - time.time() * 1000) < 5000
    assert client.stats["sent"] == 1


def test_ids_are_unique_and_time_ordered(collector: Collector) -> None:
    client = make(collector)
    ids = [client.trace({"name": str(i)}) for i in range(200)]
    assert len(set(ids)) == 200
    first, last = ids[0], ids[-1]
    time.sleep(0.005)
    later = client.trace({"name": "later"})
    assert later[:13] >= last[:13] >= first[:13]


def test_batches_by_count(collector: Collector) -> None:
    client = make(collector, flush_interval=30)
    for i in range(250):
        client.trace({"name": f"t{i}"})
    assert client.flush(10)
    sizes = [len(r["traces"]) for r in collector.requests]
    assert sizes == [100, 100, 50]
    names = [t["name"] for t in collector.accepted()]
    assert names == [f"t{i}" for i in range(250)]


def test_batches_by_bytes(collector: Collector) -> None:
    client = make(collector, max_batch_bytes=5_000, gzip=False, flush_interval=30)
    blob = "x" * 1_000
    for i in range(20):
        client.trace({"name": f"t{i}", "metadata": {"blob": blob}})
    assert client.flush(10)
    assert collector.requests[0]["encoding"] is None
    sizes = [len(r["traces"]) for r in collector.requests]
    assert sum(sizes) == 20
    assert max(sizes) == 4  # ~1.1 kB per trace, 5 kB per batch
    assert len(sizes) == 5


def test_partial_batch_goes_out_after_the_interval_without_flush(collector: Collector) -> None:
    client = make(collector, flush_interval=0.2)
    sent_at = time.monotonic()
    client.trace({"name": "lonely"})
    [trace] = collector.wait_for(1, timeout=3)
    assert trace["name"] == "lonely"
    assert collector.requests[0]["time"] - sent_at < 1.0


def test_trace_never_blocks_while_server_hangs(collector: Collector) -> None:
    collector.default = Reply(delay=2.0)
    client = make(collector, flush_interval=0.01, max_batch_size=10)
    client.trace({"name": "first"})
    time.sleep(0.1)  # the worker is now stuck in a 2 s request
    start = time.perf_counter()
    for i in range(5_000):
        client.trace({"name": f"t{i}"})
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, elapsed
    assert client.stats["queued"] <= 1000


def test_queue_overflow_evicts_oldest_and_counts(collector: Collector) -> None:
    client = make(collector, max_queue_size=10, flush_interval=30)
    for i in range(25):
        client.trace({"name": f"t{i}"})
    stats = client.stats
    assert stats["queued"] == 10
    assert stats["dropped.queue_full"] == 15 and stats["dropped"] == 15
    assert client.flush(5)
    assert [t["name"] for t in collector.accepted()] == [f"t{i}" for i in range(15, 25)]


def test_retries_503_honouring_retry_after(collector: Collector) -> None:
    collector.script = [Reply(503, {"Retry-After": "0.4"}), Reply(429, {"Retry-After": "0.2"})]
    client = make(collector, initial_backoff=5.0)  # Retry-After wins over the backoff
    client.trace({"name": "eventually"})
    assert client.flush(10)
    times = [r["time"] for r in collector.requests]
    assert [r["status"] for r in collector.requests] == [503, 429, 202]
    assert times[1] - times[0] >= 0.35
    assert times[2] - times[1] >= 0.15
    assert [t["name"] for t in collector.accepted()] == ["eventually"]
    assert client.stats["retries"] == 2 and client.stats["dropped"] == 0


def test_retries_5xx_with_backoff_then_gives_up_and_counts(collector: Collector) -> None:
    collector.default = Reply(500)
    client = make(collector, max_retries=2, initial_backoff=0.05)
    client.trace({"name": "doomed"})
    assert client.flush(10)
    assert len(collector.requests) == 3
    assert client.stats["dropped.retries_exhausted"] == 1


def test_network_error_is_retried(collector: Collector) -> None:
    # nothing listens on the first URL's port: connection refused, retried, then dropped
    client = Untrace(
        "k", base_url="http://127.0.0.1:9", config=Config(max_retries=1, initial_backoff=0.01)
    )
    client.trace({"name": "x"})
    assert client.flush(10)
    assert client.stats["retries"] == 1
    assert client.stats["dropped.retries_exhausted"] == 1


def test_unauthorized_drops_without_retry(collector: Collector) -> None:
    collector.default = Reply(401)
    client = make(collector)
    for i in range(3):
        client.trace({"name": f"t{i}"})
    assert client.flush(5)
    assert len(collector.requests) == 1
    assert client.stats["dropped.unauthorized"] == 3


def test_rejected_batch_is_split_to_isolate_the_bad_trace(collector: Collector) -> None:
    # 4 traces: the whole batch and the half holding the bad one are rejected
    collector.script = [Reply(422), Reply(422), Reply(202), Reply(422), Reply(202)]
    client = make(collector, flush_interval=30)
    for i in range(4):
        client.trace({"name": f"t{i}"})
    assert client.flush(5)
    assert [len(r["traces"]) for r in collector.requests] == [4, 2, 1, 1, 2]
    assert client.stats["sent"] == 3
    assert client.stats["dropped.rejected"] == 1


def test_unserializable_and_invalid_traces_are_dropped_alone(collector: Collector) -> None:
    client = make(collector)
    client.trace({"name": "nan", "metrics": {"latency_ms": math.nan}})
    client.trace({"name": "badkind", "kind": "banana"})
    client.trace({"name": "obj", "metadata": {"thing": object()}})
    client.trace({"name": "ok"})
    assert client.flush(5)
    names = [t["name"] for t in collector.accepted()]
    assert names == ["obj", "ok"]
    assert collector.accepted()[0]["metadata"]["thing"].startswith("<object object")
    assert client.stats["dropped.unserializable"] == 1
    assert client.stats["dropped.invalid"] == 1


def test_trace_never_raises() -> None:
    class Evil:
        def keys(self) -> Any:
            return ["name"]

        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

    client = Untrace("k", base_url="http://127.0.0.1:9")
    assert client.trace(Evil()) == ""  # type: ignore[arg-type]
    assert client.trace(None) == ""  # type: ignore[arg-type]
    assert client.stats["dropped.error"] == 2
    client.shutdown(0.1)


def test_config_metadata_defaults_merge_under_the_trace(collector: Collector) -> None:
    client = make(
        collector,
        environment="prod",
        application_id="app",
        version="1.2",
        tags={"team": "a", "tier": "x"},
    )
    client.trace({"name": "t", "metadata": {"environment": "staging", "tags": {"tier": "y"}}})
    assert client.flush(5)
    [trace] = collector.accepted()
    assert trace["metadata"] == {
        "applicationId": "app",
        "environment": "staging",
        "version": "1.2",
        "tags": {"team": "a", "tier": "y"},
    }


def test_shutdown_is_idempotent_and_later_traces_are_ignored(collector: Collector) -> None:
    client = make(collector)
    client.trace({"name": "before"})
    assert client.shutdown(5)
    assert client.shutdown(5)
    assert client.trace({"name": "after"}) == ""
    assert [t["name"] for t in collector.accepted()] == ["before"]


def test_shutdown_cuts_retries_short_and_counts_what_is_left(collector: Collector) -> None:
    collector.default = Reply(503, {"Retry-After": "30"})
    client = make(collector, max_backoff=60)
    client.trace({"name": "stuck"})
    time.sleep(0.2)
    start = time.monotonic()
    assert client.shutdown(timeout=0.5) is False
    assert time.monotonic() - start < 2.0
    assert client.stats["dropped.shutdown"] == 1


def test_disabled_without_api_key() -> None:
    client = Untrace(base_url="http://127.0.0.1:9")
    assert client.enabled is False
    assert client.trace({"name": "x"}) == ""
    assert client.flush(0.1) is True
    assert client.stats["queued"] == 0


def test_init_reads_environment(collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNTRACE_API_KEY", "ut_from_env")
    monkeypatch.setenv("UNTRACE_BASE_URL", collector.url + "/")
    client = untrace.init(flush_interval=0.1)
    assert untrace.get_client() is client
    assert untrace.trace({"name": "env"})
    assert untrace.flush(5)
    assert collector.requests[0]["auth"] == "Bearer ut_from_env"
    assert collector.accepted()[0]["name"] == "env"


def test_module_functions_are_noops_before_init() -> None:
    assert untrace.get_client() is None
    assert untrace.trace({"name": "x"}) == ""
    assert untrace.flush(0.1) is True
    with untrace.span("nobody listens") as sp:
        sp.set_output("fine")
    assert untrace.shutdown() is True


async def test_works_inside_asyncio_without_touching_the_loop(collector: Collector) -> None:
    untrace.init("k", base_url=collector.url)
    loop = asyncio.get_running_loop()
    tasks_before = asyncio.all_tasks()

    async def work(i: int) -> None:
        async with untrace.span(f"task{i}", session_id=f"s{i}"):
            await asyncio.sleep(0.01)
            untrace.trace({"name": f"inner{i}"})

    await asyncio.gather(*(work(i) for i in range(5)))
    assert asyncio.all_tasks() <= tasks_before | {asyncio.current_task()}
    assert not loop._ready  # type: ignore[attr-defined]  # nothing scheduled by the SDK
    assert await asyncio.to_thread(untrace.flush, 5)
    traces = {t["name"]: t for t in collector.accepted()}
    for i in range(5):
        assert traces[f"inner{i}"]["parentId"] == traces[f"task{i}"]["id"]
        assert traces[f"inner{i}"]["sessionId"] == f"s{i}"


def test_any_httpx_transport_can_stand_in_for_the_server() -> None:
    import gzip
    import json

    import httpx

    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.extend(json.loads(gzip.decompress(request.content))["traces"])
        return httpx.Response(202, json={"accepted": 1})

    client = Untrace("k", base_url="http://untrace.test", transport=httpx.MockTransport(handler))
    client.trace({"name": "mocked"})
    assert client.flush(5)
    assert [t["name"] for t in seen] == ["mocked"]
    client.shutdown(1)
