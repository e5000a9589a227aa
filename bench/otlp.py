"""OTLP receiver benchmark: protobuf spans/s accepted (200, durable) by one server process.

Two numbers:
  1. in-process — decode + map to Traces + encode, no HTTP, no queue: the receiver's CPU
     cost per span on this core;
  2. end to end — ``untrace serve`` (one process, the default durable SQLite queue)
     taking ``POST /v1/traces`` bodies of --spans GenAI chat spans (about 1 KB each,
     current GenAI names with messages), --concurrency requests in flight, --seconds.
     ``--pin`` runs the server on CPU 1 and this load generator on CPU 0 (``taskset``),
     the "one core" number; ``--memory`` swaps the durable queue for ``memory://`` to
     show what the queue's writes cost.

    .venv/bin/python bench/otlp.py [--seconds 10] [--spans 500] [--concurrency 4]
                                   [--pin] [--memory]
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
from pathlib import Path

import httpx
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.server import ADMIN_KEY, free_port  # noqa: E402

from untrace_server import model  # noqa: E402
from untrace_server.ingest._otlp_http import PROTOBUF, OtlpHandler  # noqa: E402

UNTRACE = str(Path(sys.executable).parent / "untrace")


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_body(n: int) -> bytes:
    now = time.time_ns()
    trace_id = os.urandom(16)
    spans = []
    for i in range(n):
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.request.temperature": 0.2,
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 40,
            "session.id": f"session-{i % 50}",
            "gen_ai.input.messages": json.dumps(
                [
                    {
                        "role": "user",
                        "parts": [
                            {"type": "text", "content": f"question {i} " + "lorem ipsum " * 20}
                        ],
                    }
                ]
            ),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": "answer " + "dolor sit " * 20}],
                    }
                ]
            ),
        }
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=os.urandom(8),
                name="chat gpt-4o-mini",
                kind=3,
                start_time_unix_nano=now,
                end_time_unix_nano=now + 1_200_000_000,
                attributes=[_kv(k, v) for k, v in attrs.items()],
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [_kv("service.name", "bench")]},
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


def in_process(body: bytes, n: int, seconds: float = 3.0) -> float:
    """What the handler does per request minus HTTP and the queue: decode and map
    (``OtlpHandler.convert``: root-id bookkeeping, checks, GC paused), encode."""
    handler = OtlpHandler(sink=None, max_body_bytes=len(body))  # type: ignore[arg-type]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        traces, problems = handler.convert(body, PROTOBUF)
        assert len(traces) == n and not problems, problems[:1]
        for trace in traces:
            model.encode(trace)
        done += n
    return done / (time.perf_counter() - started)


async def load(url: str, body: bytes, n: int, seconds: float, concurrency: int) -> tuple[int, int]:
    headers = {"Content-Type": "application/x-protobuf", "x-untrace-key": ADMIN_KEY}
    accepted = errors = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=30.0) as client:

        async def worker() -> None:
            nonlocal accepted, errors
            while time.monotonic() < deadline:
                response = await client.post(url, content=body, headers=headers)
                if response.status_code == 200:
                    accepted += n
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted, errors


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) each thread of ``pid`` used so far, by thread name
    (Linux /proc; empty elsewhere)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--spans", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pin", action="store_true", help="server on CPU 1, load on CPU 0")
    parser.add_argument("--memory", action="store_true", help="memory:// queue, not SQLite")
    parser.add_argument(
        "--synchronous", default="FULL", help="the SQLite queue's PRAGMA synchronous"
    )
    args = parser.parse_args()
    body = build_body(args.spans)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"python {platform.python_version()}"
    )
    print(f"body: {args.spans} spans, {len(body)} bytes ({len(body) // args.spans} B/span)")
    print(f"in-process decode+map+encode: {in_process(body, args.spans):,.0f} spans/s")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "untrace.yaml"
        config.write_text(yaml.safe_dump({"queue": {"budget_bytes": 8 << 30}}))
        port = free_port()
        env = {
            **os.environ,
            "UNTRACE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "UNTRACE_SECRET_KEY": "bench",
            "UNTRACE_LOG_LEVEL": "warning",
            "UNTRACE_ROLE": "api",
        }
        if args.memory:
            env["UNTRACE_QUEUE__URL"] = "memory://"
        env["UNTRACE_QUEUE__SYNCHRONOUS"] = args.synchronous
        server = subprocess.Popen(
            [
                *(["taskset", "-c", "1"] if args.pin else []),
                UNTRACE,
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--data-dir",
                str(Path(tmp) / "data"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if args.pin:
                os.sched_setaffinity(0, {0})
            url = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if httpx.get(url + "/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            asyncio.run(load(url + "/v1/traces", body, args.spans, 1.0, args.concurrency))
            cpu_before = thread_cpu(server.pid)
            started = time.monotonic()
            accepted, errors = asyncio.run(
                load(url + "/v1/traces", body, args.spans, args.seconds, args.concurrency)
            )
            elapsed = time.monotonic() - started
            cpu = {k: v - cpu_before.get(k, 0.0) for k, v in thread_cpu(server.pid).items()}
        finally:
            server.terminate()
            server.wait(30)
    queue = "memory:// queue" if args.memory else f"sqlite queue synchronous={args.synchronous}"
    where = "server pinned to CPU 1, load on CPU 0" if args.pin else "unpinned"
    print(
        f"end to end (role=api, {queue}, 1 process, {where}): "
        f"{accepted / elapsed:,.0f} spans/s accepted, {errors} errors, "
        f"concurrency {args.concurrency}"
    )
    if accepted and cpu:
        busy = sum(cpu.values())
        print(
            f"server CPU: {busy / elapsed:.0%} of one core, "
            f"{busy * 1e6 / accepted:.1f} us of CPU per span accepted"
        )


if __name__ == "__main__":
    main()
