"""Ingest benchmark: traces/s answered 202 (durably), latency, end-to-end delivery, RSS.

Runs, in one go on this machine:
  1. baseline — the same server and HTTP stack with an in-memory queue (answers 202
     without persisting anything), so the cost of durability shows as a ratio;
  2. durable — the default SQLite queue (WAL, synchronous=FULL, group commit), delivering
     to a local webhook sink in another process; end-to-end rate measured at the sink.

Load: batches of 100 traces of about 1 KB, concurrency 8, for --seconds (default 10).

    .venv/bin/python bench/ingest.py [--seconds 10] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import ADMIN_KEY, SINK, free_port, start_server, stop  # noqa: E402


def make_body(batch: int) -> bytes:
    now = int(time.time() * 1000)
    traces = []
    for i in range(batch):
        traces.append(
            {
                "startTime": now - 900,
                "endTime": now,
                "provider": "openai",
                "model": "gpt-4o-mini",
                "request": {
                    "messages": [
                        {
                            "role": "system",
                            "content": "You are a helpful assistant for a travel site.",
                        },
                        {
                            "role": "user",
                            "content": f"Find me three hotels near the old town, request {i}. "
                            "I would like breakfast included and a quiet room facing the"
                            " courtyard.",
                        },
                    ],
                    "parameters": {"temperature": 0.3, "max_tokens": 512},
                },
                "response": {
                    "content": "Here are three hotels near the old town with breakfast: "
                    "Hotel Aurora, Casa Verde and the Courtyard Inn. All offer quiet rooms.",
                    "usage": {"prompt_tokens": 58, "completion_tokens": 41, "total_tokens": 99},
                    "finish_reason": "stop",
                },
                "metadata": {
                    "applicationId": "travel-bot",
                    "environment": "bench",
                    "version": "1.4.2",
                    "tags": {"team": "search", "tier": "gold"},
                    "userId": f"user-{i % 97}",
                },
                "metrics": {"latency_ms": 900, "time_to_first_token_ms": 210},
            }
        )
    return json.dumps({"traces": traces}).encode()


def rss_peak_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def load(
    url: str, body: bytes, seconds: float, concurrency: int, batch: int
) -> dict[str, float]:
    latencies: list[float] = []
    accepted = 0
    errors = 0
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal accepted, errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                if r.status_code == 202:
                    accepted += batch
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "traces_per_s": accepted / elapsed,
        "accepted": accepted,
        "errors": errors,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "elapsed_s": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    body = make_body(args.batch)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"load: {args.batch} traces/request ({len(body) // args.batch} bytes/trace), "
        f"concurrency {args.concurrency}, {args.seconds:.0f}s per run"
    )
    tmp = Path(tempfile.mkdtemp(prefix="untrace-bench-"))

    proc, url = start_server(
        tmp / "baseline", {}, {"UNTRACE_QUEUE__URL": "memory://", "UNTRACE_ROLE": "api"}
    )
    base = asyncio.run(
        load(url + "/api/v1/traces", body, args.seconds, args.concurrency, args.batch)
    )
    base_rss = rss_peak_kb(proc.pid)
    stop(proc)

    proc, url = start_server(tmp / "durable-api", {}, {"UNTRACE_ROLE": "api"})
    api_only = asyncio.run(
        load(url + "/api/v1/traces", body, args.seconds, args.concurrency, args.batch)
    )
    api_rss = rss_peak_kb(proc.pid)
    stop(proc)

    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port), "0"])
    config = {
        "customers": {
            "default": {
                "destinations": [
                    {
                        "id": "sink",
                        "type": "webhook",
                        "config": {"url": f"http://127.0.0.1:{sink_port}/hook"},
                    }
                ],
                "routing": {"defaultDestinations": ["sink"]},
            }
        },
        "delivery": {"max_batch": 500},
    }
    proc, url = start_server(tmp / "durable", config, {})
    started = time.perf_counter()
    durable = asyncio.run(
        load(url + "/api/v1/traces", body, args.seconds, args.concurrency, args.batch)
    )
    delivered = 0
    while delivered < durable["accepted"] and time.perf_counter() - started < args.seconds * 20:
        time.sleep(0.2)
        delivered = int(httpx.get(f"http://127.0.0.1:{sink_port}/count").text)
    e2e_elapsed = time.perf_counter() - started
    durable_rss = rss_peak_kb(proc.pid)
    stop(proc)
    sink.terminate()
    sink.wait()

    print()
    print("| run | traces/s accepted (202) | p50 ms | p99 ms | errors | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for name, r, rss in (
        ("baseline: memory queue, no persistence (role api)", base, base_rss),
        ("durable, ingest only: SQLite WAL, synchronous=FULL (role api)", api_only, api_rss),
        ("durable + worker + delivery in the same process (role all)", durable, durable_rss),
    ):
        print(
            f"| {name} | {r['traces_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['errors']:.0f} | {rss / 1024:.0f} |"
        )
    print()
    print(
        "durable ingest / baseline throughput: "
        f"{api_only['traces_per_s'] / base['traces_per_s']:.2f}"
    )
    print(
        f"full process / baseline throughput: {durable['traces_per_s'] / base['traces_per_s']:.2f}"
    )
    print(
        f"end to end: {delivered:,} of {durable['accepted']:,.0f} accepted traces delivered to the "
        f"webhook sink in {e2e_elapsed:.1f}s from the first request: "
        f"{delivered / e2e_elapsed:,.0f} traces/s"
    )


if __name__ == "__main__":
    main()
