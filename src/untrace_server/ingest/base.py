"""What every receiver shares: the sink that makes accepted traces durable, request-body
reading with limits, and the shape of a receiver.

A receiver turns its wire format into Traces and hands them to ``TraceSink.submit``,
which stamps the customer (from the API key, never from the body) and missing ids,
then publishes them to the ``traces`` topic. A receiver answers 2xx only after
``submit`` returned: then the traces are on disk.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Protocol

from starlette.requests import Request
from starlette.routing import BaseRoute

from untrace_server import model
from untrace_server.errors import InvalidPayload, PayloadTooLarge
from untrace_server.queue.base import TRACES_TOPIC, Queue

__all__ = ["Receiver", "TraceSink", "read_body"]


class Receiver(Protocol):
    def routes(self) -> Sequence[BaseRoute]: ...


class TraceSink:
    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def stamp(self, trace: model.Trace, customer_id: str) -> model.Trace:
        if not trace.id:
            trace.id = model.new_id()
        trace.metadata["customerId"] = customer_id
        return trace

    async def submit(self, traces: Sequence[model.Trace], customer_id: str) -> list[str]:
        """Durably enqueue ``traces`` for ``customer_id``; raises QueueFull/QueueUnavailable
        (nothing written) if the queue cannot take them."""
        stamped = [self.stamp(t, customer_id) for t in traces]
        await self.queue.publish(TRACES_TOPIC, [(t.id, model.encode(t)) for t in stamped])
        return [t.id for t in stamped]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed (gzip/deflate), refusing more than ``limit`` bytes
    before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower().strip()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidPayload(f"unsupported Content-Encoding {encoding!r}", status=415)
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidPayload(f"body is not valid {encoding}: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds the {limit}-byte limit")
    return out
