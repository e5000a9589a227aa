"""httpx vs aiohttp as the proxy's upstream client (DESIGN §8: measure): CPU per request
and requests/s of each async client against the fast mock, at concurrency 1 and 16,
this process pinned to core 0 and the mock to core 1.

    .venv/bin/python bench/proxy/clients.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import free_port, start_mock

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
HEADERS = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
N = 4000


async def run(name: str, call, concurrency: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):
        await call()
    per_worker = N // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    total = per_worker * concurrency
    print(f"| {name} | {concurrency} | {cpu / total * 1e6:.0f} | {total / wall:.0f} |")


async def main() -> None:
    os.sched_setaffinity(0, {0})
    port = free_port()
    mock = start_mock(port)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        print("| client | concurrency | CPU µs/request | requests/s |\n|---|---|---|---|")
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(limits=limits) as hx, aiohttp.ClientSession() as aio:

            async def call_httpx() -> None:
                r = await hx.post(url, content=BODY, headers=HEADERS)
                r.read()

            async def call_aiohttp() -> None:
                async with aio.post(url, data=BODY, headers=HEADERS) as r:
                    await r.read()

            for concurrency in (1, 16):
                await run("httpx", call_httpx, concurrency)
                await run("aiohttp", call_aiohttp, concurrency)
    finally:
        mock.stop()


if __name__ == "__main__":
    uvloop.run(main())
