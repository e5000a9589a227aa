"""Relaying the upstream's response to the client, with the capture's side copy.

A small body (Content-Length up to ``_READ_WHOLE``) is read and sent in one piece;
anything else (SSE streams, large or chunked bodies) is sent chunk by chunk as it
arrives. While a stream runs, a watcher waits for the client to go away: then the
upstream call is closed (no more tokens spent) and the trace is marked partial.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from starlette.types import Receive, Send

from untrace_server.proxy.capture import Exchange
from untrace_server.proxy.config import ProxyConfig
from untrace_server.proxy.errors import error_body
from untrace_server.proxy.headers import response_headers
from untrace_server.proxy.stream import UsageStripper
from untrace_server.proxy.upstream import map_read_error

__all__ = ["relay"]

_READ_WHOLE = 1 << 20
_READ_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError)


async def relay(
    response: aiohttp.ClientResponse,
    exchange: Exchange | None,
    receive: Receive,
    send: Send,
    provider: str,
    base_url: str,
    config: ProxyConfig,
) -> None:
    status = response.status
    content_type = response.headers.get("Content-Type", "")
    is_stream = content_type.startswith("text/event-stream")
    encoding = response.headers.get("Content-Encoding")
    # the rewrite needs plain text: a compressed stream is relayed as it came
    strip = exchange is not None and exchange.injected_usage and is_stream and not encoding
    if exchange is not None:
        exchange.status = status
        exchange.stream = is_stream
        exchange.content_encoding = encoding
    headers = response_headers(response.raw_headers, drop_length=strip)
    length = response.content_length
    if not is_stream and length is not None and length <= _READ_WHOLE:
        try:
            data = await response.read()
        except _READ_ERRORS as exc:
            error = map_read_error(exc, base_url)
            if exchange is not None:
                exchange.error = (error.type, error.message)
                exchange.t_end = time.perf_counter()
            await _send_error(send, provider, error.status, error.type, error.message)
            return
        if exchange is not None:
            exchange.t_end = time.perf_counter()
            exchange.body = data if len(data) <= config.max_capture_bytes else b""
            exchange.truncated = len(data) > config.max_capture_bytes
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await _relay_chunks(response, exchange, receive, send, strip, config.max_capture_bytes)


async def _relay_chunks(
    response: aiohttp.ClientResponse,
    exchange: Exchange | None,
    receive: Receive,
    send: Send,
    strip: bool,
    max_capture: int,
) -> None:
    stripper = UsageStripper() if strip else None
    watcher = asyncio.ensure_future(receive())  # completes when the client goes away

    def client_gone(future: asyncio.Future[Any]) -> None:
        if not future.cancelled():  # stop the upstream call: no more tokens spent
            response.close()

    watcher.add_done_callback(client_gone)
    chunks = exchange.chunks if exchange is not None else None
    captured = 0
    error: BaseException | None = None
    try:
        async for chunk in response.content.iter_any():
            if chunks is not None:
                if captured + len(chunk) <= max_capture:
                    chunks.append((time.perf_counter(), chunk))
                    captured += len(chunk)
                elif exchange is not None:
                    exchange.truncated = True
            out = stripper.feed(chunk) if stripper is not None else chunk
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if watcher.done():
                break
    except _READ_ERRORS as exc:
        error = exc
    finally:
        if not watcher.done():
            watcher.cancel()
    disconnected = watcher.done() and not watcher.cancelled()
    if exchange is not None:
        exchange.t_end = time.perf_counter()
        if disconnected or error is not None:
            exchange.partial = True
        if error is not None and not disconnected:
            failure = map_read_error(error, "upstream")
            exchange.error = (failure.type, failure.message)
        if not exchange.stream:
            exchange.body = b"".join(c for _, c in exchange.chunks)
            exchange.chunks = []
    tail = stripper.flush() if stripper is not None else b""
    await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _send_error(send: Send, provider: str, status: int, type_: str, message: str) -> None:
    body = error_body(provider, type_, message)
    headers: list[tuple[bytes, Any]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
