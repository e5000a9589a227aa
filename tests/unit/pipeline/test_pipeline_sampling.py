from __future__ import annotations

import math
import subprocess
import sys

from untrace_server.model import from_builtins
from untrace_server.pipeline.metrics import SAMPLING_DROPPED
from untrace_server.pipeline.sampling import (
    Sampler,
    TokenBucket,
    always_keep_test,
    hash_fraction,
    sampling_key,
)

from .conftest import trace_dict


def t(**kw):
    return from_builtins(trace_dict(**kw))


def test_same_id_same_decision_across_processes():
    ids = [f"id-{i}" for i in range(200)]
    here = [Sampler(rate=0.3).decide(t(id=i)).keep for i in ids]
    code = (
        "from untrace_server.pipeline.sampling import hash_fraction\n"
        f"print(''.join('1' if hash_fraction(i) < 0.3 else '0' for i in {ids!r}))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        assert out == "".join("1" if k else "0" for k in here)


def test_observed_rate_within_statistical_bounds():
    n, rate = 100_000, 0.1
    kept = sum(hash_fraction(f"trace-{i}") < rate for i in range(n))
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(kept - n * rate) < 5 * sigma  # ~95 either side


def test_children_follow_the_root_and_sessions_group():
    sampler = Sampler(rate=0.5)
    for i in range(50):
        root = t(id=f"root-{i}")
        child = t(id=f"child-{i}", parentId=f"root-{i}")
        grandchild = t(id=f"gc-{i}", parentId=f"child-{i}", metadata={"rootId": f"root-{i}"})
        decisions = {sampler.decide(x).keep for x in (root, child, grandchild)}
        assert len(decisions) == 1
    by_session = Sampler(rate=0.5, key="session")
    kept = {by_session.decide(t(id=f"x{i}", sessionId="s-1")).keep for i in range(30)}
    assert len(kept) == 1
    assert sampling_key(t(id="a", sessionId="s"), "session") == "s"
    assert sampling_key(t(id="a"), "session") == "a"


def test_rates_are_nested():
    ids = [f"n-{i}" for i in range(2000)]
    low = {i for i in ids if Sampler(rate=0.1).decide(t(id=i)).keep}
    high = {i for i in ids if Sampler(rate=0.5).decide(t(id=i)).keep}
    assert low < high


def test_token_bucket():
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert bucket.peek() and bucket.peek()  # peeking spends nothing
    assert bucket.take() and not bucket.take()


def test_always_keep_overrides_rate_and_limit():
    keep = always_keep_test(errors=True, latency_above_ms=1000, condition=None)
    now = [0.0]
    sampler = Sampler(rate=0.0, bucket=TokenBucket(1, 1, clock=lambda: now[0]), always_keep=keep)
    assert sampler.decide(t()).keep is False  # latency 1500 ms? not filled in: no metrics
    slow = t(metrics={"latency_ms": 5000})
    failed = t(error={"type": "Timeout", "message": "upstream"})
    assert sampler.decide(slow).reason == "always_keep"
    assert sampler.decide(failed).reason == "always_keep"
    assert Sampler(rate=0.0).decide(t()).reason == "sample_rate"


def test_drops_are_counted_by_reason():
    from untrace_server.pipeline.config import build_pipeline

    routing = {"defaultDestinations": ["d"], "samplingConfig": {"rate": 0.0}}
    pipeline = build_pipeline(routing, customer_id="count-test", known_destinations={"d"})
    before = SAMPLING_DROPPED.labels("count-test", "sample_rate")._value.get()
    assert pipeline.process(t()) == []
    assert SAMPLING_DROPPED.labels("count-test", "sample_rate")._value.get() == before + 1
