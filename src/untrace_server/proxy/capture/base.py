"""What both providers' capture share: the Exchange record, SSE parsing, decoding the
side copy, and the parts of a Trace that do not depend on the provider."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import msgspec

from untrace_server import model
from untrace_server.proxy.headers import TraceHeaders

__all__ = [
    "Exchange",
    "base_trace",
    "body_json",
    "error_from_body",
    "first_token_ms",
    "plain_chunks",
    "sse_events",
    "to_messages",
    "tokens_per_second",
]


class Exchange:
    """One proxied call, as recorded on the request path (cheap: no parsing)."""

    __slots__ = (
        "body",
        "chunks",
        "content_encoding",
        "customer_id",
        "endpoint",
        "error",
        "headers",
        "injected_usage",
        "partial",
        "provider",
        "request_body",
        "start_ms",
        "status",
        "stream",
        "t0",
        "t_end",
        "truncated",
    )

    def __init__(
        self,
        provider: str,
        endpoint: str,
        customer_id: str,
        headers: TraceHeaders,
        request_body: bytes,
        start_ms: int,
        t0: float,
    ) -> None:
        self.provider = provider
        self.endpoint = endpoint
        self.customer_id = customer_id
        self.headers = headers
        self.request_body = request_body
        self.start_ms = start_ms
        self.t0 = t0
        self.status: int | None = None
        self.content_encoding: str | None = None
        self.stream = False
        self.body = b""
        self.chunks: list[tuple[float, bytes]] = []  # (perf_counter, bytes) of a stream
        self.t_end = t0
        self.partial = False
        self.truncated = False
        self.injected_usage = False
        self.error: tuple[str, str] | None = None  # the proxy's own failure


_decoder = msgspec.json.Decoder()


def body_json(data: bytes, encoding: str | None = None) -> Any:
    """The JSON value of a (possibly gzip/deflate) body, or None."""
    if encoding in ("gzip", "deflate"):
        try:
            wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
            data = zlib.decompress(data, wbits)
        except zlib.error:
            return None
    elif encoding not in (None, "", "identity"):
        return None
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        return None


def plain_chunks(exchange: Exchange) -> list[tuple[float, bytes]]:
    """The stream's chunks as text: a compressed stream is inflated whole (its events
    then all carry the time of the first chunk)."""
    encoding = exchange.content_encoding
    if not exchange.chunks or encoding in (None, "", "identity"):
        return exchange.chunks
    if encoding not in ("gzip", "deflate"):
        return []
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    try:
        text = zlib.decompressobj(wbits).decompress(b"".join(c for _, c in exchange.chunks))
    except zlib.error:
        return []
    return [(exchange.chunks[0][0], text)]


def sse_events(chunks: list[tuple[float, bytes]]) -> Iterator[tuple[float, str, Any]]:
    """(time the event completed, event name, decoded data) for each SSE event."""
    pending = b""
    for at, chunk in chunks:
        pending += chunk
        pending = pending.replace(b"\r\n", b"\n")
        while True:
            end = pending.find(b"\n\n")
            if end < 0:
                break
            raw, pending = pending[:end], pending[end + 2 :]
            name, data_lines = "", []
            for line in raw.split(b"\n"):
                if line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip(b" "))
                elif line.startswith(b"event:"):
                    name = line[6:].strip().decode("utf-8", "replace")
            if not data_lines:
                continue
            data = b"\n".join(data_lines)
            if data == b"[DONE]":
                yield at, name or "done", None
                continue
            try:
                yield at, name, _decoder.decode(data)
            except msgspec.DecodeError:
                continue


def error_from_body(status: int, body: Any) -> model.TraceError:
    """The provider's error (both shapes: ``{"error": {...}}``), or the bare status."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return model.TraceError(
            type=str(err.get("type") or err.get("code") or f"http_{status}"),
            message=str(err.get("message") or f"HTTP {status}"),
        )
    return model.TraceError(type=f"http_{status}", message=f"upstream answered HTTP {status}")


def base_trace(exchange: Exchange, request: dict[str, Any]) -> model.Trace:
    """The provider-independent part: ids, times, metadata, latency."""
    h = exchange.headers
    latency_ms = (exchange.t_end - exchange.t0) * 1000.0
    metadata = h.trace_metadata()
    metadata["endpoint"] = exchange.endpoint
    if exchange.stream:
        metadata["stream"] = True
    if exchange.partial:
        metadata["partial"] = True
    if exchange.truncated:
        metadata["truncated"] = True
    trace = model.Trace(
        start_time=exchange.start_ms,
        end_time=exchange.start_ms + round(latency_ms),
        id=model.new_id(),
        parent_id=h.parent_id,
        session_id=h.session_id,
        provider=exchange.provider,
        model=request.get("model") if isinstance(request.get("model"), str) else None,
        metadata=metadata,
        metrics=model.TraceMetrics(latency_ms=round(latency_ms, 3)),
    )
    if exchange.error is not None:
        trace.error = model.TraceError(type=exchange.error[0], message=exchange.error[1])
    return trace


def first_token_ms(exchange: Exchange, at: float | None) -> float | None:
    return None if at is None else round((at - exchange.t0) * 1000.0, 3)


_MIN_GENERATION_S = 0.01  # a shorter first-token → end window is a burst, not generation


def tokens_per_second(exchange: Exchange, tokens: int, first_at: float | None) -> float | None:
    """Output tokens over generation time (first token → end); over the whole latency
    when there is no first token or the rest came in one burst (an upstream or a proxy
    that buffers), which would make the rate meaningless."""
    if tokens <= 0:
        return None
    streamed = first_at is not None and exchange.t_end - first_at >= _MIN_GENERATION_S
    start = first_at if streamed and first_at is not None else exchange.t0
    elapsed = exchange.t_end - start
    return round(tokens / elapsed, 3) if elapsed > 0 else None


def to_messages(items: Any) -> list[model.Message] | None:
    """Provider messages as Trace messages (unknown keys dropped, non-dicts skipped)."""
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        role = item.get("role") or item.get("type") or "unknown"
        content = item.get("content") if "role" in item else item
        tool_calls = item.get("tool_calls")
        out.append(
            model.Message(
                role=str(role),
                content=content,
                name=item.get("name") if isinstance(item.get("name"), str) else None,
                tool_calls=tool_calls if isinstance(tool_calls, list) else None,
                tool_call_id=item.get("tool_call_id")
                if isinstance(item.get("tool_call_id"), str)
                else None,
            )
        )
    return out
