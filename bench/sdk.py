"""SDK overhead benchmarks (prints numbers; not a timed test).

1. ``trace()`` on the caller's thread: median / p99 per call, with the background
   worker running and sending to a local collector.
2. An instrumented openai chat completion against a local mock upstream, compared
   with an uninstrumented one (interleaved blocks, medians), plus the tracing hook
   alone (same work, no network) for a low-noise figure.
3. The same for a streamed chat completion (7 chunks, read to the end, the caller not
   asking for usage): the instrumented call asks for usage, so it also receives,
   records and hides one more chunk.

    .venv/bin/python bench/sdk.py [--calls 20000] [--rounds 40]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sdk" / "python" / "tests"))

import openai
from openai.types.chat import ChatCompletionChunk
from sdk_fakes import Collector, MockLLM, _openai_chunks, serving

import untrace
from untrace._instrument import _PROVIDERS
from untrace._instrument._call import LLMCall

EVENT = {
    "name": "chat",
    "kind": "llm",
    "provider": "openai",
    "model": "gpt-4o",
    "request": {
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "parameters": {"temperature": 0.2},
    },
    "response": {
        "content": "Paris.",
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    },
    "metrics": {"latency_ms": 412.0},
}
MESSAGES = [{"role": "user", "content": "hi"}]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_trace(collector_url: str, calls: int) -> dict[str, float]:
    client = untrace.Untrace("k", base_url=collector_url)
    per_call: list[float] = []
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        client.trace(EVENT)
        per_call.append((clock() - t0) / 1000)
        if i % 500 == 499:
            client.flush(10)  # untimed: keep the queue under its bound, measure trace() alone
    # timer overhead, measured the same way
    empty: list[float] = []
    for _ in range(calls):
        t0 = clock()
        empty.append((clock() - t0) / 1000)
    client.flush(30)
    stats = client.stats
    client.shutdown(5)
    timer = statistics.median(empty)
    return {
        "median_us": statistics.median(per_call) - timer,
        "p99_us": pct(per_call, 0.99) - timer,
        "sent": stats["sent"],
        "dropped": stats["dropped"],
    }


def bench_openai(mock_url: str, collector_url: str, rounds: int, block: int) -> dict[str, float]:
    untrace.init("k", base_url=collector_url)
    oai = openai.OpenAI(api_key="sk", base_url=mock_url + "/v1", max_retries=0)
    plain: list[float] = []
    traced: list[float] = []
    clock = time.perf_counter_ns

    def run(into: list[float]) -> None:
        for _ in range(block):
            t0 = clock()
            oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            into.append((clock() - t0) / 1000)

    untrace.uninstrument()
    run([])  # warm up connections and imports
    for _ in range(rounds):
        untrace.uninstrument()
        run(plain)
        untrace.instrument()
        run(traced)
    untrace.uninstrument()

    # the hook alone: what instrumentation adds around the same call, minus the network
    response = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    provider = _PROVIDERS["openai"][0].provider
    client = untrace.get_client()
    assert client is not None
    hook: list[float] = []
    kwargs: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0.2}
    for i in range(5000):
        t0 = clock()
        LLMCall(client, provider, kwargs).finish(response)
        hook.append((clock() - t0) / 1000)
        if i % 500 == 499:
            client.flush(10)
    oai.close()
    untrace.flush(30)
    untrace.shutdown(5)
    return {
        "plain_median_us": statistics.median(plain),
        "traced_median_us": statistics.median(traced),
        "added_median_us": statistics.median(traced) - statistics.median(plain),
        "hook_median_us": statistics.median(hook),
        "hook_p99_us": pct(hook, 0.99),
        "calls_each": len(plain),
    }


def bench_openai_stream(
    mock_url: str, collector_url: str, rounds: int, block: int
) -> dict[str, float]:
    """Interleaved: uninstrumented; instrumented (asks for usage, hides the extra
    chunk); instrumented with ``openai_stream_usage=False`` (the hooks alone)."""
    asking = untrace.Untrace("k", base_url=collector_url)
    not_asking = untrace.Untrace(
        "k", base_url=collector_url, config=untrace.Config(openai_stream_usage=False)
    )
    oai = openai.OpenAI(api_key="sk", base_url=mock_url + "/v1", max_retries=0)
    times: dict[str, list[float]] = {"plain": [], "usage": [], "no_usage": []}
    clock = time.perf_counter_ns

    def run(into: list[float]) -> None:
        for _ in range(block):
            t0 = clock()
            chunks = list(
                oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            )
            into.append((clock() - t0) / 1000)
            assert len(chunks) == 7

    untrace.uninstrument()
    run([])
    for _ in range(rounds):
        untrace.uninstrument()
        run(times["plain"])
        untrace.instrument(asking)
        run(times["usage"])
        untrace.instrument(not_asking)
        run(times["no_usage"])
    untrace.uninstrument()
    oai.close()

    # the hooks alone on the caller's thread: 8 parsed chunks (the usage one included)
    # read through a hooked stream, minus reading them plainly
    wire = list(_openai_chunks({"model": "gpt-4o", "stream_options": {"include_usage": True}}))
    provider = _PROVIDERS["openai"][0].provider
    kwargs: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}

    class FakeResponse:
        def close(self) -> None:
            pass

    class FakeStream:
        def __init__(self) -> None:
            self.response = FakeResponse()
            self._iterator = iter([ChatCompletionChunk.model_validate(c) for c in wire])

    hook: list[float] = []
    for i in range(5000):
        bare, hooked = FakeStream(), FakeStream()
        t0 = clock()
        list(bare._iterator)
        t1 = clock()
        LLMCall(asking, provider, kwargs).finish(hooked)
        list(hooked._iterator)
        hook.append((clock() - t1 - (t1 - t0)) / 1000)
        if i % 500 == 499:
            asking.flush(10)
    for client in (asking, not_asking):
        client.flush(30)
        client.shutdown(5)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "hook_median_us": statistics.median(hook),
        "hook_p99_us": pct(hook, 0.99),
        "plain_median_us": med["plain"],
        "traced_median_us": med["usage"],
        "added_median_us": med["usage"] - med["plain"],
        "added_no_usage_us": med["no_usage"] - med["plain"],
        "calls_each": len(times["plain"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--block", type=int, default=25)
    args = parser.parse_args()
    collector, mock = Collector(), MockLLM()
    print(
        f"python {platform.python_version()} on {platform.machine()} "
        f"{platform.processor() or platform.platform()}"
    )
    with serving(collector.server), serving(mock.server):
        t = bench_trace(collector.url, args.calls)
        print(
            f"trace() on caller thread: median {t['median_us']:.2f} us, "
            f"p99 {t['p99_us']:.2f} us  ({args.calls} calls; sent {t['sent']}, "
            f"dropped {t['dropped']})  target <= 5 us median"
        )
        o = bench_openai(mock.url, collector.url, args.rounds, args.block)
        print(
            f"openai chat.completions.create vs local mock, {o['calls_each']} calls each: "
            f"uninstrumented median {o['plain_median_us']:.0f} us, "
            f"instrumented {o['traced_median_us']:.0f} us, "
            f"added {o['added_median_us']:+.1f} us  target <= 50 us"
        )
        print(
            f"instrumentation hook alone (LLMCall + finish + trace): median "
            f"{o['hook_median_us']:.2f} us, p99 {o['hook_p99_us']:.2f} us"
        )
        s = bench_openai_stream(mock.url, collector.url, args.rounds, args.block)
        print(
            f"openai chat.completions.create(stream=True), 7 chunks, {s['calls_each']} "
            f"calls each: uninstrumented median {s['plain_median_us']:.0f} us, "
            f"instrumented {s['traced_median_us']:.0f} us, "
            f"added {s['added_median_us']:+.1f} us (with openai_stream_usage=False: "
            f"{s['added_no_usage_us']:+.1f} us)"
        )
        print(
            f"stream hooks alone (ask, record and hide usage, 8 chunks, trace): median "
            f"{s['hook_median_us']:.2f} us, p99 {s['hook_p99_us']:.2f} us"
        )


if __name__ == "__main__":
    main()
