"""The capture buffer and the usage stripper, in process: drops are counted, never
raised; the stripper restores exactly the stream the client asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from untrace_server import model
from untrace_server.errors import QueueFull
from untrace_server.observability.metrics import DROPPED
from untrace_server.proxy.buffer import CaptureBuffer
from untrace_server.proxy.stream import UsageStripper, ask_for_usage


class Item:
    def __init__(self, n: int) -> None:
        self.n = n
        self.customer_id = "c1" if n % 2 else "c2"


class RecordingSink:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.fail = fail

    async def submit(self, traces: Sequence[model.Trace], customer_id: str) -> list[str]:
        if self.fail:
            raise QueueFull("full")
        self.batches.append((customer_id, [int(t.name or 0) for t in traces]))
        return [t.id for t in traces]


def _trace(item: Item) -> model.Trace:
    return model.Trace(start_time=0, end_time=0, name=str(item.n))


def _dropped(reason: str) -> float:
    return DROPPED.labels("proxy", reason)._value.get()


async def test_full_buffer_drops_oldest_and_counts() -> None:
    sink = RecordingSink()
    buffer = CaptureBuffer(sink, _trace, size=3, batch_size=10)  # type: ignore[arg-type]
    before = _dropped("buffer_full")
    for n in range(5):
        buffer.put(Item(n))
    assert _dropped("buffer_full") - before == 2
    await buffer.shutdown()  # flushes what is left
    assert sorted(n for _, ns in sink.batches for n in ns) == [2, 3, 4]
    assert {c for c, _ in sink.batches} == {"c1", "c2"}  # one batch per customer


async def test_background_drain_batches_and_queue_full_counts() -> None:
    sink = RecordingSink()
    buffer = CaptureBuffer(sink, _trace, batch_size=4, flush_interval_s=0.01)  # type: ignore[arg-type]
    await buffer.start()
    for n in range(10):
        buffer.put(Item(n))
    for _ in range(100):
        if len(buffer) == 0 and sum(len(ns) for _, ns in sink.batches) == 10:
            break
        await asyncio.sleep(0.01)
    assert sorted(n for _, ns in sink.batches for n in ns) == list(range(10))
    assert max(len(ns) for _, ns in sink.batches) <= 4
    sink.fail = True
    before = _dropped("queue_full")
    buffer.put(Item(1))
    await buffer.shutdown()
    assert _dropped("queue_full") - before == 1


async def test_capture_error_is_counted_not_raised() -> None:
    def broken(item: Item) -> model.Trace:
        raise ValueError("bad")

    buffer = CaptureBuffer(RecordingSink(), broken)  # type: ignore[arg-type]
    before = _dropped("capture_error")
    buffer.put(Item(1))
    assert await buffer.flush() == 0
    assert _dropped("capture_error") - before == 1


def test_ask_for_usage_only_when_streaming_without_it() -> None:
    assert ask_for_usage(b'{"stream": false}') == (b'{"stream": false}', False)
    body, added = ask_for_usage(b'{"stream":true,"stream_options":{"x":1}}')
    assert added and body == b'{"stream":true,"stream_options":{"x":1,"include_usage":true}}'
    kept = b'{"stream":true,"stream_options":{"include_usage":true}}'
    assert ask_for_usage(kept) == (kept, False)
    assert ask_for_usage(b"not json") == (b"not json", False)


def test_stripper_restores_the_stream_across_odd_chunking() -> None:
    with_usage = (
        b'data: {"id":"a","choices":[{"delta":{"content":"hi \\"usage\\":null"}}],"usage":null}\n\n'
        b'data: {"id":"a","choices":[{"delta":{},"finish_reason":"stop"}],"usage":null}\n\n'
        b'data: {"id":"a","choices":[],"usage":{"total_tokens":3}}\n\n'
        b"data: [DONE]\n\n"
    )
    expected = (
        b'data: {"id":"a","choices":[{"delta":{"content":"hi \\"usage\\":null"}}]}\n\n'
        b'data: {"id":"a","choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    for size in (1, 7, 50, len(with_usage)):
        stripper = UsageStripper()
        out = b"".join(
            stripper.feed(with_usage[i : i + size]) for i in range(0, len(with_usage), size)
        )
        assert out + stripper.flush() == expected
