"""The worker with a queue that refuses some messages for their size (as NATS does past
its max_payload): that trace's delivery is dropped and counted, the rest of the batch is
queued and the batch is acked — it is not retried forever."""

from __future__ import annotations

from collections.abc import Sequence

from untrace_server import model
from untrace_server.errors import PayloadTooLarge
from untrace_server.observability.metrics import DROPPED
from untrace_server.pipeline.base import Route
from untrace_server.pipeline.worker import TraceWorker
from untrace_server.queue.base import TRACES_TOPIC, MessageId, delivery_topic
from untrace_server.queue.memory import MemoryQueue

LIMIT = 5_000


class SmallMessagesQueue(MemoryQueue):
    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[MessageId]:
        if any(len(payload) > LIMIT for _, payload in items):
            raise PayloadTooLarge(f"a message over {LIMIT} bytes")
        return await super().publish(topic, items)


class Everything:
    def process(self, trace: model.Trace) -> list[Route]:
        return [Route(destination_id="hook", trace=trace)]


async def test_an_oversized_delivery_is_dropped_and_the_batch_goes_on() -> None:
    queue = SmallMessagesQueue()
    await queue.start()
    traces = [
        model.from_builtins(
            {"id": f"t-{i}", "startTime": 1, "endTime": 2,
             "response": {"content": "x" * (9_000 if i == 1 else 10)},
             "metadata": {"customerId": "c"}}
        )
        for i in range(3)
    ]  # fmt: skip
    await MemoryQueue.publish(queue, TRACES_TOPIC, [(t.id, model.encode(t)) for t in traces])
    worker = TraceWorker(queue, lambda customer: Everything())
    dropped = DROPPED.labels("worker", "too_large_for_queue")
    before = dropped._value.get()
    await worker.process(await queue.lease(TRACES_TOPIC, 10, 30))
    assert dropped._value.get() - before == 1
    queued = await queue.lease(delivery_topic("c", "hook"), 10, 30)
    assert [m.key for m in queued] == ["t-0", "t-2"]
    assert await queue.lease(TRACES_TOPIC, 10, 0.01) == []  # acked, not coming back
    assert (await queue.stats()).pending.get(TRACES_TOPIC, 0) == 0
    await queue.close()
