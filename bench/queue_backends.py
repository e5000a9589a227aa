"""Queue benchmark: records/s published durably by concurrent publishers, per backend.

Runs in one process, against the in-memory queue as the baseline, SQLite with
synchronous=FULL and NORMAL (WAL, group commit), and Redis Streams and NATS JetStream
when reachable.
Each of --publishers tasks publishes batches of --batch records of about 1 KB for
--seconds; then 100,000 of them are leased and acked back, to time the consuming side.

    .venv/bin/python bench/queue_backends.py [--seconds 5] [--publishers 8] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from untrace_server.errors import QueueUnavailable
from untrace_server.queue.base import Queue
from untrace_server.queue.memory import MemoryQueue
from untrace_server.queue.nats import NatsQueue
from untrace_server.queue.redis import RedisQueue
from untrace_server.queue.sqlite import SqliteQueue

PAYLOAD = b'{"k": "' + b"x" * 1000 + b'"}'
CONSUME = 100_000  # records leased and acked back to time the consuming side


async def run(queue: Queue, seconds: float, publishers: int, batch: int) -> dict[str, float]:
    await queue.start()
    published = 0
    deadline = time.perf_counter() + seconds

    async def publisher(n: int) -> None:
        nonlocal published
        i = 0
        while time.perf_counter() < deadline:
            await queue.publish("bench", [(f"{n}-{i}-{j}", PAYLOAD) for j in range(batch)])
            published += batch
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(publisher(n) for n in range(publishers)))
    publish_s = time.perf_counter() - started

    consumed = 0
    started = time.perf_counter()
    while consumed < CONSUME:
        messages = await queue.lease("bench", 500, 60)
        if not messages:
            break
        await queue.ack([m.id for m in messages])
        consumed += len(messages)
    consume_s = time.perf_counter() - started
    await queue.close()
    return {
        "publish_per_s": published / publish_s,
        "consume_per_s": consumed / consume_s if consume_s else 0.0,
        "published": published,
        "consumed": consumed,
    }


async def cleanup(queue: RedisQueue | NatsQueue, args: argparse.Namespace) -> None:
    """Delete what a distributed backend's run left on its server."""
    if isinstance(queue, RedisQueue):
        redis = RedisQueue(args.redis, prefix=queue.prefix)
        await redis.start()
        async for key in redis.redis.scan_iter(match=f"{queue.prefix}:*"):
            await redis.redis.delete(key)
        await redis.close()
        return
    nats = NatsQueue(args.nats, stream=queue.stream)
    await nats.start()
    for stream in nats.streams:
        await nats.jsm.delete_stream(stream)
    await nats.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="untrace-qbench-"))
    backends: list[tuple[str, Any]] = [
        ("memory (baseline, nothing durable)", lambda: MemoryQueue(budget_bytes=16 << 30)),
        ("sqlite WAL synchronous=FULL", lambda: SqliteQueue(tmp / "full.db", synchronous="FULL")),
        (
            "sqlite WAL synchronous=NORMAL",
            lambda: SqliteQueue(tmp / "normal.db", synchronous="NORMAL"),
        ),
        (
            "redis streams (no AOF here)",
            lambda: RedisQueue(args.redis, prefix=f"qbench{os.getpid()}"),
        ),
        (
            "nats jetstream (file storage, 1 replica)",
            lambda: NatsQueue(args.nats, stream=f"qbench{os.getpid()}"),
        ),
    ]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"{args.publishers} publishers x batches of {args.batch} records of {len(PAYLOAD)} B, "
        f"{args.seconds:.0f}s each\n"
    )
    print("| backend | published records/s | lease+ack records/s | vs baseline |")
    print("|---|---|---|---|")
    base = None
    for name, make in backends:
        queue = make()
        try:
            result = await run(queue, args.seconds, args.publishers, args.batch)
        except QueueUnavailable as exc:
            print(f"| {name} | skipped: {exc} | | |")
            continue
        finally:
            if isinstance(queue, RedisQueue | NatsQueue):
                await queue.close()
        if isinstance(queue, RedisQueue | NatsQueue):
            await cleanup(queue, args)
        assert result["consumed"] == min(CONSUME, result["published"]), result
        base = base or result["publish_per_s"]
        print(
            f"| {name} | {result['publish_per_s']:,.0f} | {result['consume_per_s']:,.0f} | "
            f"{result['publish_per_s'] / base:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
