"""Proxy overhead benchmark: Untrace's proxy and the LiteLLM proxy in one harness, each
pinned to core 0, in front of the same mock upstream (bench/proxy/mock.py, core 1);
the load generator runs on core 1 too. Overhead = latency through a proxy minus latency
direct to the mock, measured interleaved in the same run. Trace capture stays on.

    .venv/bin/python bench/proxy/run.py                       # Untrace only
    .venv/bin/python bench/proxy/run.py --litellm .cache/litellm-venv
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "proxy"))
from procs import (  # noqa: E402
    LITELLM_KEY,
    Proc,
    cpu_seconds,
    free_port,
    start_litellm,
    start_mock,
    start_untrace,
)
from rawclient import RawClient  # noqa: E402

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
).encode()
STREAM_BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
).encode()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


class Target:
    def __init__(self, name: str, url: str, headers: dict[str, str], proc: Proc | None) -> None:
        self.name, self.url, self.headers, self.proc = name, url, headers, proc

    async def call(self, session: RawClient, stream: bool = False) -> float:
        """Seconds to the whole body (plain) or to the first body byte (stream)."""
        started = time.perf_counter()
        status, first = await session.post(self.url, STREAM_BODY if stream else BODY, self.headers)
        elapsed = (first if stream else time.perf_counter()) - started
        if status != 200:
            raise RuntimeError(f"{self.name}: HTTP {status}")
        return elapsed


async def interleaved(
    session: RawClient, targets: list[Target], concurrency: int, seconds: float,
    stream: bool = False, rounds: int | None = None,
) -> dict[str, list[float]]:  # fmt: skip
    """Each worker cycles through the targets, so all see the same moment of the machine."""
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        n = 0
        while time.perf_counter() < deadline and (rounds is None or n < rounds):
            for target in targets:
                samples[target.name].append(await target.call(session, stream))
            n += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def open_loop(session: RawClient, target: Target, rate: float, seconds: float):  # type: ignore[no-untyped-def]
    """Requests sent on a fixed schedule; latency counted from the scheduled time."""
    latencies: list[float] = []
    errors = 0
    tasks = []
    start = time.perf_counter()
    total = int(rate * seconds)

    async def one(at: float) -> None:
        nonlocal errors
        try:
            status, _ = await session.post(target.url, BODY, target.headers)
            if status != 200:
                errors += 1
        except Exception:
            errors += 1
        latencies.append(time.perf_counter() - at)

    for i in range(total):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at)))
    await asyncio.gather(*tasks)
    return latencies, errors, total / (time.perf_counter() - start)


def ms(x: float) -> str:
    return f"{x * 1000:.2f}"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    mock_port = free_port()
    procs: list[Proc] = [start_mock(mock_port)]
    direct = Target("direct", f"http://127.0.0.1:{mock_port}/v1/chat/completions",
                    {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"},
                    None)  # fmt: skip
    untrace = start_untrace(work, mock_port, role=args.role)
    procs.append(untrace)
    peers = [Target("untrace", f"{untrace.url}/openai/v1/chat/completions",
                    {**direct.headers, "X-Untrace-Key": untrace.key}, untrace)]  # fmt: skip
    if args.litellm:
        litellm = start_litellm(work, mock_port, Path(args.litellm))
        procs.append(litellm)
        auth = {**direct.headers, "Authorization": f"Bearer {LITELLM_KEY}"}
        peers.append(Target("litellm", f"{litellm.url}/v1/chat/completions", auth, litellm))
    results: dict[str, Any] = {"role": args.role}
    try:
        with contextlib.closing(RawClient()) as session:
            for t in [direct, *peers]:  # warm up pools and caches
                for _ in range(50 if t.name != "litellm" else 20):
                    await t.call(session)
                    await t.call(session, True)
            for peer in peers:
                slow = peer.name == "litellm"
                r: dict[str, Any] = results.setdefault(peer.name, {})
                for c in (1, 16, 64):
                    before = cpu_seconds(peer.proc.pid) if peer.proc else 0.0
                    s = await interleaved(
                        session, [direct, peer], c, args.seconds * (2 if slow else 1)
                    )
                    cpu = cpu_seconds(peer.proc.pid) - before if peer.proc else 0.0
                    d, p = s["direct"], s[peer.name]
                    r[f"c{c}"] = {
                        "n": len(p),
                        "direct_p50_ms": ms(pct(d, 50)), "direct_p99_ms": ms(pct(d, 99)),
                        "added_p50_ms": ms(pct(p, 50) - pct(d, 50)),
                        "added_p99_ms": ms(pct(p, 99) - pct(d, 99)),
                        "cpu_ms_per_request": f"{cpu / len(p) * 1000:.3f}",
                    }  # fmt: skip
                    print(peer.name, f"c={c}", r[f"c{c}"], flush=True)
                s = await interleaved(session, [direct, peer], 1, args.seconds, stream=True)
                d, p = s["direct"], s[peer.name]
                r["stream_ttfb"] = {"n": len(p), "direct_p50_ms": ms(pct(d, 50)),
                                    "added_p50_ms": ms(pct(p, 50) - pct(d, 50)),
                                    "added_p99_ms": ms(pct(p, 99) - pct(d, 99))}  # fmt: skip
                print(peer.name, "stream", r["stream_ttfb"], flush=True)
                rates = [10, 20, 40, 60, 80, 100, 150, 200] if slow else args.rates
                best, misses = 0.0, 0
                r["rates"] = []
                for rate in rates:
                    lat, errors, achieved = await open_loop(session, peer, rate, args.rate_seconds)
                    p99 = pct(lat, 99)
                    r["rates"].append(
                        {
                            "rate": rate,
                            "achieved": round(achieved),
                            "p99_ms": ms(p99),
                            "errors": errors,
                        }
                    )
                    print(peer.name, f"rate={rate}", ms(p99), "errors", errors, flush=True)
                    if p99 < 0.050 and errors == 0:
                        best, misses = rate, 0
                    else:
                        misses += 1
                        if misses == 2:  # two misses in a row: past the knee
                            break
                    await asyncio.sleep(1.0)
                r["max_rps_p99_under_50ms"] = best
        if untrace.proc is not None:
            results["untrace"]["dropped_metrics"] = untrace.dropped()
    finally:
        for proc in reversed(procs):
            proc.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--litellm", help="a venv with litellm[proxy] installed")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate-seconds", type=float, default=4.0)
    parser.add_argument("--role", default="all", choices=["all", "api"])
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")],
                        default=[250, 500, 1000, 1500, 2000, 2500, 3000, 3500])  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / ".cache" / "bench-proxy.json"))
    ns = parser.parse_args()
    out = uvloop.run(main(ns))
    Path(ns.out).parent.mkdir(exist_ok=True)
    Path(ns.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
