"""Soak benchmark: does the server's memory stay flat under steady traffic for a long time?

Runs the real server (``untrace serve``, role all: receivers, worker and deliverers in one
process, durable SQLite queue) twice, for --minutes each, under the same fixed load, and
samples its RSS (``VmRSS`` from /proc) every --sample-s seconds together with the sinks'
counts and the server's /metrics (queue depth, dead letters, drops):

  1. baseline — customer ``default`` has ONE destination, a healthy webhook sink (another
     process); a routing rule with ``pii_redaction`` sends every trace there;
  2. soak — the same, plus at the same time:
       - a destination that is down (webhook to a closed port): 1 trace in 10 is routed
         there; retries with a short backoff, the breaker opens and half-opens every
         second, and after ``delivery.max_attempts`` (3) the traces become dead letters,
         which accumulate on disk;
       - a slow destination (a sink that takes 2 s per request): 2 traces in 10, with
         ``pii_redaction`` and ``truncate``.

Load, open loop at --rate traces/s (default 500), through the three capture paths:
60 % native ingest (``POST /api/v1/traces``, batches of 20), 20 % OTLP/JSON
(``POST /v1/traces``, 10 spans per request), 20 % the OpenAI proxy (streamed chat
completions against a local mock upstream, another process). One trace in five carries an
e-mail address or a phone number for the redaction to find.

Reported per run: RSS after warm-up (the first sample after the first 20 % of the run),
at the end and at peak; the least-squares slope of RSS over the post-warm-up samples in
MiB/hour; traces accepted, delivered to the healthy sink, dead letters. The soak run is
read against the baseline (slopes and end / warm-up RSS ratios side by side).

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 500] [--sample-s 5]
                                   [--only baseline|soak] [--tracemalloc]

``--tracemalloc`` starts the server with tracemalloc on (through a ``sitecustomize`` in a
temporary directory: no server code involved) and writes, every minute after warm-up, the
allocation sites that grew most since warm-up to ``<run dir>/tracemalloc.txt``. It slows
the server down; use it to find the cause of a growth, not for the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import ADMIN_KEY, SINK, free_port, start_server, stop  # noqa: E402

# The least an OpenAI upstream must answer for a streamed chat completion: role chunk,
# content chunks, finish chunk, the usage chunk when stream_options.include_usage, [DONE].
MOCK_UPSTREAM = r"""
import json, sys, uvicorn
WORDS = ["Here", " are", " three", " hotels", " near", " the", " old", " town", "."]
def dump(d):
    return json.dumps(d, separators=(",", ":"))
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    req = json.loads(body or b"{}")
    model = req.get("model", "gpt-4o-mini") + "-2024-07-18"
    usage = {"prompt_tokens": 31, "completion_tokens": len(WORDS), "total_tokens": 31 + len(WORDS)}
    if not req.get("stream"):
        msg = {"role": "assistant", "content": "".join(WORDS)}
        out = dump({"id": "chatcmpl-soak", "object": "chat.completion", "created": 1700000000,
                    "model": model, "usage": usage, "choices": [
                        {"index": 0, "message": msg, "finish_reason": "stop"}]}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})
        return
    with_usage = bool((req.get("stream_options") or {}).get("include_usage"))
    def chunk(delta, finish=None):
        d = {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1700000000,
             "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if with_usage:
            d["usage"] = None
        return b"data: " + dump(d).encode() + b"\n\n"
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "more_body": True,
                "body": chunk({"role": "assistant", "content": ""})})
    for w in WORDS:
        await send({"type": "http.response.body", "body": chunk({"content": w}),
                    "more_body": True})
    tail = chunk({}, "stop")
    if with_usage:
        u = {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1700000000,
             "model": model, "choices": [], "usage": usage}
        tail += b"data: " + dump(u).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""

# Loaded by the server's interpreter when --tracemalloc is given (PYTHONPATH).
TRACEMALLOC_SITE = r"""
import os, threading, time, tracemalloc
def _watch():
    warm = float(os.environ["SOAK_TRACEMALLOC_WARM_S"])
    out = os.environ["SOAK_TRACEMALLOC_OUT"]
    time.sleep(warm)
    base = tracemalloc.take_snapshot()
    while True:
        time.sleep(60)
        snap = tracemalloc.take_snapshot()
        traced = tracemalloc.get_traced_memory()[0] >> 20
        lines = [f"{time.strftime('%H:%M:%S')} traced {traced} MiB"]
        for kind in ("lineno", "traceback"):
            lines.append(f"-- top growth since warm-up by {kind}")
            for stat in snap.compare_to(base, kind)[:15]:
                lines.append(str(stat))
                if kind == "traceback":
                    lines.extend("      " + s for s in stat.traceback.format()[-12:])
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")
tracemalloc.start(12)
threading.Thread(target=_watch, daemon=True, name="soak-tracemalloc").start()
"""

NATIVE_SHARE, OTLP_SHARE, PROXY_SHARE = 0.6, 0.2, 0.2
NATIVE_BATCH, OTLP_BATCH = 20, 10
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}


def tier(i: int) -> str:
    """1 in 10 gold (→ down and slow destinations), 1 in 10 silver (→ slow), rest bronze."""
    return ("gold", "silver", *("bronze",) * 8)[i % 10]


def user_text(i: int) -> str:
    text = (
        f"Find me three hotels near the old town, request {i}. I would like breakfast "
        "included and a quiet room facing the courtyard."
    )
    if i % 5 == 1:
        text += f" Send the list to guest{i % 1000}@example.com please."
    elif i % 5 == 3:
        text += f" Or call me on +44 20 7946 {i % 10000:04d}."
    return text


ANSWER = (
    "Here are three hotels near the old town with breakfast: Hotel Aurora, Casa Verde "
    "and the Courtyard Inn. All offer quiet rooms."
)


def native_body(start: int, n: int) -> bytes:
    now = int(time.time() * 1000)
    traces = [
        {
            "startTime": now - 900,
            "endTime": now,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "request": {
                "messages": [
                    {"role": "system", "content": "You are a helpful travel assistant."},
                    {"role": "user", "content": user_text(i)},
                ],
                "parameters": {"temperature": 0.3, "max_tokens": 512},
            },
            "response": {
                "content": ANSWER,
                "usage": {"prompt_tokens": 58, "completion_tokens": 41, "total_tokens": 99},
                "finish_reason": "stop",
            },
            "metadata": {
                "applicationId": "travel-bot",
                "environment": "soak",
                "tier": tier(i),
                "tags": {"team": "search"},
                "userId": f"user-{i % 97}",
            },
            "metrics": {"latency_ms": 900, "time_to_first_token_ms": 210},
        }
        for i in range(start, start + n)
    ]
    return json.dumps({"traces": traces}).encode()


def _attr(key: str, value: str | int) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def otlp_body(start: int, n: int) -> bytes:
    now = time.time_ns()
    trace_id = os.urandom(16).hex()
    spans = []
    for i in range(start, start + n):
        messages_in = [{"role": "user", "parts": [{"type": "text", "content": user_text(i)}]}]
        messages_out = [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": ANSWER}],
                "finish_reason": "stop",
            }
        ]
        spans.append(
            {
                "traceId": trace_id,
                "spanId": os.urandom(8).hex(),
                "name": "chat gpt-4o-mini",
                "kind": 3,
                "startTimeUnixNano": str(now - 900_000_000),
                "endTimeUnixNano": str(now),
                "attributes": [
                    _attr("gen_ai.operation.name", "chat"),
                    _attr("gen_ai.provider.name", "openai"),
                    _attr("gen_ai.request.model", "gpt-4o-mini"),
                    _attr("gen_ai.usage.input_tokens", 58),
                    _attr("gen_ai.usage.output_tokens", 41),
                    _attr("gen_ai.input.messages", json.dumps(messages_in)),
                    _attr("gen_ai.output.messages", json.dumps(messages_out)),
                    _attr("langfuse.trace.metadata.tier", tier(i)),
                    _attr("user.id", f"user-{i % 97}"),
                ],
            }
        )
    resource = {
        "attributes": [
            _attr("service.name", "travel-bot"),
            _attr("deployment.environment", "soak"),
        ]
    }
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}
    return json.dumps(body).encode()


def proxy_body(i: int) -> bytes:
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [
            {"role": "system", "content": "You are a helpful travel assistant."},
            {"role": "user", "content": user_text(i)},
        ],
    }
    return json.dumps(body).encode()


@dataclass
class Counters:
    accepted: int = 0  # traces the server took (native: 202; OTLP: 200; proxy: stream read)
    errors: int = 0  # requests answered otherwise, or failed
    skipped: int = 0  # ticks not sent because too many requests were in flight
    by_path: dict[str, int] = field(default_factory=dict)


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_kib: int
    healthy: int
    slow: int
    accepted: int
    queue_depth: int
    dead: int
    dropped: int


def rss_kib(pid: int, key: str = "VmRSS:") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def parse_metrics(text: str) -> dict[str, int]:
    """Sum the gauges/counters this benchmark watches over all their labels."""
    wanted = {
        "untrace_queue_depth": "queue_depth",
        "untrace_dead_letters": "dead",
        "untrace_dropped_total": "dropped",
    }
    out = dict.fromkeys(wanted.values(), 0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            out[wanted[name]] += int(float(line.rsplit(" ", 1)[1]))
    return out


async def sink_count(client: httpx.AsyncClient, port: int | None) -> int:
    if port is None:
        return 0
    try:
        r = await client.get(f"http://127.0.0.1:{port}/count")
        return int(r.text)
    except (httpx.HTTPError, ValueError):
        return -1


async def paced(
    rate: float,
    deadline: float,
    max_in_flight: int,
    send: Callable[[int], Coroutine[Any, Any, None]],
    counters: Counters,
) -> None:
    """Call ``send(n)`` ``rate`` times a second until ``deadline`` (open loop: a slow
    answer does not slow the pace, up to ``max_in_flight`` requests outstanding)."""
    interval = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()
    n = 0
    next_at = time.monotonic()
    while next_at < deadline:
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) < max_in_flight:
            task = asyncio.create_task(send(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            counters.skipped += 1
        n += 1
        next_at += interval
    if tasks:
        await asyncio.wait(tasks, timeout=60)


async def run_load(
    url: str,
    pid: int,
    rate: float,
    seconds: float,
    sample_s: float,
    healthy_port: int,
    slow_port: int | None,
) -> tuple[Counters, list[Sample]]:
    counters = Counters(by_path={"native": 0, "otlp": 0, "proxy": 0})
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(limits=limits, timeout=60) as client,
        httpx.AsyncClient(timeout=10) as probe,
    ):
        started = time.monotonic()
        deadline = started + seconds

        async def native(n: int) -> None:
            body = native_body(n * NATIVE_BATCH, NATIVE_BATCH)
            try:
                r = await client.post(url + "/api/v1/traces", content=body, headers=HEADERS)
            except httpx.HTTPError:
                counters.errors += 1
                return
            if r.status_code == 202:
                got = int(r.json()["accepted"])
                counters.accepted += got
                counters.by_path["native"] += got
            else:
                counters.errors += 1

        async def otlp(n: int) -> None:
            body = otlp_body(n * OTLP_BATCH, OTLP_BATCH)
            try:
                r = await client.post(url + "/v1/traces", content=body, headers=HEADERS)
            except httpx.HTTPError:
                counters.errors += 1
                return
            rejected = 0
            if r.status_code == 200:
                partial = r.json().get("partialSuccess") or {}
                rejected = int(partial.get("rejectedSpans") or 0)
                counters.accepted += OTLP_BATCH - rejected
                counters.by_path["otlp"] += OTLP_BATCH - rejected
            if r.status_code != 200 or rejected:
                counters.errors += 1

        proxy_headers = {
            "Authorization": "Bearer sk-soak-not-a-real-key",
            "X-Untrace-Key": ADMIN_KEY,
            "X-Untrace-Environment": "soak",
            "Content-Type": "application/json",
        }

        async def proxy(n: int) -> None:
            headers = {**proxy_headers, "X-Untrace-Metadata-Tier": tier(n)}
            try:
                async with client.stream(
                    "POST",
                    url + "/openai/v1/chat/completions",
                    content=proxy_body(n),
                    headers=headers,
                ) as r:
                    data = await r.aread()
            except httpx.HTTPError:
                counters.errors += 1
                return
            if r.status_code == 200 and data.endswith(b"data: [DONE]\n\n"):
                counters.accepted += 1
                counters.by_path["proxy"] += 1
            else:
                counters.errors += 1

        samples: list[Sample] = []

        async def sampler() -> None:
            while True:
                now = time.monotonic()
                try:
                    m = parse_metrics((await probe.get(url + "/metrics")).text)
                except httpx.HTTPError:
                    m = {"queue_depth": -1, "dead": -1, "dropped": -1}
                samples.append(
                    Sample(
                        t=now - started,
                        rss_kib=rss_kib(pid),
                        healthy=await sink_count(probe, healthy_port),
                        slow=await sink_count(probe, slow_port),
                        accepted=counters.accepted,
                        **m,
                    )
                )
                if now >= deadline:
                    return
                await asyncio.sleep(max(0.0, min(sample_s, deadline - time.monotonic())))

        await asyncio.gather(
            paced(rate * NATIVE_SHARE / NATIVE_BATCH, deadline, 16, native, counters),
            paced(rate * OTLP_SHARE / OTLP_BATCH, deadline, 16, otlp, counters),
            paced(rate * PROXY_SHARE, deadline, 48, proxy, counters),
            sampler(),
        )
    return counters, samples


def start_process(script: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", script, str(port), *args])
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/count", timeout=1)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("helper process did not start")


def make_config(healthy_port: int, down_port: int | None, slow_port: int | None) -> dict[str, Any]:
    def hook(dest_id: str, port: int) -> dict[str, Any]:
        return {
            "id": dest_id,
            "type": "webhook",
            "config": {"url": f"http://127.0.0.1:{port}/hook", "secret": "soak-secret"},
        }

    destinations = [hook("healthy", healthy_port)]
    rules: list[dict[str, Any]] = [
        {
            "id": "soak-redacted",
            "priority": 100,
            "conditions": {"field": "$.metadata.environment", "operator": "eq", "value": "soak"},
            "actions": {"destinations": ["healthy"], "transformations": ["pii_redaction"]},
        }
    ]
    if down_port is not None:
        destinations.append(hook("down", down_port))
        rules.append(
            {
                "id": "gold-to-down",
                "priority": 50,
                "conditions": {"field": "$.metadata.tier", "operator": "eq", "value": "gold"},
                "actions": {"destinations": ["down"]},
            }
        )
    if slow_port is not None:
        destinations.append(hook("slow", slow_port))
        rules.append(
            {
                "id": "gold-silver-to-slow",
                "priority": 40,
                "conditions": {
                    "field": "$.metadata.tier",
                    "operator": "in",
                    "value": ["gold", "silver"],
                },
                "actions": {
                    "destinations": ["slow"],
                    "transformations": [
                        "pii_redaction",
                        {"name": "truncate", "config": {"maxChars": 200}},
                    ],
                },
            }
        )
    return {
        "customers": {
            "default": {
                "destinations": destinations,
                "routing": {"version": "3", "defaultDestinations": ["healthy"], "rules": rules},
            }
        },
        "delivery": {
            "max_batch": 500,
            "max_attempts": 3,
            "backoff_initial_s": 0.2,
            "backoff_max_s": 1.0,
            "breaker_failures": 5,
            "breaker_reset_s": 1.0,
            "send_timeout_s": 10.0,
            "visibility_s": 30.0,
        },
    }


@dataclass
class RunResult:
    name: str
    counters: Counters
    samples: list[Sample]
    warm_at_s: float
    delivered_after_drain: int
    drain_s: float
    final: dict[str, int]

    def post_warmup(self) -> list[Sample]:
        return [s for s in self.samples if s.t >= self.warm_at_s]

    def rss_warm_mib(self) -> float:
        return self.post_warmup()[0].rss_kib / 1024

    def rss_end_mib(self) -> float:
        return self.samples[-1].rss_kib / 1024

    def rss_peak_mib(self) -> float:
        return max(s.rss_kib for s in self.samples) / 1024

    def slope_mib_per_h(self) -> float:
        return slope([(s.t / 3600, s.rss_kib / 1024) for s in self.post_warmup()])


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx if sxx else 0.0


def run(
    name: str,
    tmp: Path,
    args: argparse.Namespace,
    upstream_port: int,
    with_faults: bool,
) -> RunResult:
    seconds = args.minutes * 60
    healthy, healthy_port = start_process(SINK, "0")
    helpers = [healthy]
    slow_port: int | None = None
    down_port: int | None = None
    if with_faults:
        slow, slow_port = start_process(SINK, str(args.slow_s))
        helpers.append(slow)
        down_port = free_port()  # nothing listens there
    env = {"UNTRACE_OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1"}
    workdir = tmp / name
    if args.tracemalloc:
        site = tmp / "tracemalloc-site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(TRACEMALLOC_SITE)
        env.update(
            {
                "PYTHONPATH": str(site),
                "SOAK_TRACEMALLOC_WARM_S": str(seconds * 0.2 + 5),
                "SOAK_TRACEMALLOC_OUT": str(workdir / "tracemalloc.txt"),
            }
        )
    proc, url = start_server(workdir, make_config(healthy_port, down_port, slow_port), env)
    try:
        counters, samples = asyncio.run(
            run_load(url, proc.pid, args.rate, seconds, args.sample_s, healthy_port, slow_port)
        )
        # let the healthy sink catch up (bounded), so "delivered" is comparable across runs
        drain_started = time.monotonic()
        delivered = 0
        while time.monotonic() - drain_started < 60:
            delivered = int(httpx.get(f"http://127.0.0.1:{healthy_port}/count").text)
            if delivered >= counters.accepted:
                break
            time.sleep(0.5)
        drain_s = time.monotonic() - drain_started
        time.sleep(2.5)  # one more upkeep tick for the gauges
        final = parse_metrics(httpx.get(url + "/metrics").text)
    finally:
        stop(proc)
        for helper in helpers:
            helper.terminate()
            helper.wait()
    (workdir / "samples.json").write_text(json.dumps([s.__dict__ for s in samples]))
    return RunResult(name, counters, samples, seconds * 0.2, delivered, drain_s, final)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0, help="per run (two runs)")
    parser.add_argument("--rate", type=float, default=500.0, help="traces/s, all paths")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--slow-s", type=float, default=2.0, help="slow sink, s/request")
    parser.add_argument("--only", choices=["baseline", "soak"], default=None)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"load: {args.rate:.0f} traces/s open loop ({NATIVE_SHARE:.0%} native ingest in batches "
        f"of {NATIVE_BATCH}, {OTLP_SHARE:.0%} OTLP/JSON in requests of {OTLP_BATCH} spans, "
        f"{PROXY_SHARE:.0%} streamed OpenAI proxy calls), {args.minutes:g} min per run, "
        f"RSS sampled every {args.sample_s:g} s"
    )
    tmp = Path(tempfile.mkdtemp(prefix="untrace-soak-"))
    print(f"run dirs: {tmp}")
    upstream, upstream_port = start_process(MOCK_UPSTREAM)
    results: list[RunResult] = []
    try:
        for name, with_faults in (("baseline", False), ("soak", True)):
            if args.only in (None, name):
                print(f"running {name} …", flush=True)
                results.append(run(name, tmp, args, upstream_port, with_faults))
    finally:
        upstream.terminate()
        upstream.wait()

    print()
    print(
        "| run | RSS after warm-up MiB | RSS end MiB | peak MiB | end / warm-up | "
        "slope MiB/h | traces accepted | delivered to healthy sink | dead letters | "
        "queue depth gauge at end | errors / skipped |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    labels = {
        "baseline": "baseline: healthy webhook only",
        "soak": "soak: healthy + down + slow (2 s)",
    }
    for r in results:
        c = r.counters
        print(
            f"| {labels[r.name]} | {r.rss_warm_mib():.1f} | {r.rss_end_mib():.1f} | "
            f"{r.rss_peak_mib():.1f} | {r.rss_end_mib() / r.rss_warm_mib():.3f} | "
            f"{r.slope_mib_per_h():+.1f} | {c.accepted:,} | {r.delivered_after_drain:,} | "
            f"{r.final['dead']:,} | {r.final['queue_depth']:,} | {c.errors} / {c.skipped} |"
        )
    print()
    for r in results:
        c = r.counters
        paths = ", ".join(f"{k} {v:,}" for k, v in c.by_path.items())
        print(
            f"{r.name}: accepted by path: {paths}; healthy sink caught up "
            f"{r.drain_s:.1f} s after the load stopped; dropped (untrace_dropped_total) "
            f"{r.final['dropped']}"
        )
        trace = ", ".join(
            f"{s.t / 60:.1f}m {s.rss_kib / 1024:.0f}"
            for s in r.samples[:: max(1, len(r.samples) // 12)]
        )
        print(f"  RSS MiB over time: {trace}")
    if len(results) == 2:
        base, soak = results
        ratio = (soak.rss_end_mib() / soak.rss_warm_mib()) / (
            base.rss_end_mib() / base.rss_warm_mib()
        )
        print(
            f"slope soak / baseline: {soak.slope_mib_per_h():+.1f} / "
            f"{base.slope_mib_per_h():+.1f} MiB/h; end/warm-up ratio soak / baseline: "
            f"{ratio:.3f}"
        )
    summary = {
        r.name: {
            "rss_warm_mib": round(r.rss_warm_mib(), 1),
            "rss_end_mib": round(r.rss_end_mib(), 1),
            "rss_peak_mib": round(r.rss_peak_mib(), 1),
            "end_over_warm": round(r.rss_end_mib() / r.rss_warm_mib(), 4),
            "slope_mib_per_h": round(r.slope_mib_per_h(), 2),
            "accepted": r.counters.accepted,
            "accepted_by_path": r.counters.by_path,
            "delivered_healthy": r.delivered_after_drain,
            "dead_letters": r.final["dead"],
            "queue_depth_end": r.final["queue_depth"],
            "dropped": r.final["dropped"],
            "errors": r.counters.errors,
            "skipped": r.counters.skipped,
            "samples": len(r.samples),
        }
        for r in results
    }
    print(json.dumps({"bench": "soak", "minutes": args.minutes, "rate": args.rate, **summary}))


if __name__ == "__main__":
    main()
