"""The transparent proxy: ``/openai/v1/*`` and ``/anthropic/v1/*``.

A client changes only its base URL and adds ``X-Untrace-Key``. The request goes to the
customer's upstream with the provider key untouched; status, body bytes and the headers
that matter come back unchanged, a stream chunk by chunk as it arrives. The request path
records raw bytes and clock readings into an ``Exchange`` and puts it in the capture
buffer; everything else (parsing, building the trace, the queue) happens later, off the
request path (``buffer.py``). The proxy's own failures answer 502/503/504 in the
provider's error shape (``errors.py``).

Raw ASGI, not a Starlette endpoint: the hot path stays a few function calls deep.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Mount
from starlette.types import Receive, Scope, Send

from untrace_server.errors import IngestError, PayloadTooLarge, Unauthorized
from untrace_server.proxy.buffer import CaptureBuffer
from untrace_server.proxy.capture import Exchange, captured_endpoint, to_trace
from untrace_server.proxy.errors import UpstreamError, error_body
from untrace_server.proxy.headers import request_headers, with_identity_encoding
from untrace_server.proxy.relay import relay
from untrace_server.proxy.stream import ask_for_usage
from untrace_server.proxy.upstream import UpstreamPool

if TYPE_CHECKING:
    from untrace_server.app import Components

__all__ = ["ProxyReceiver", "build_receiver"]

_PREFIXES = {"openai": "/openai/v1", "anthropic": "/anthropic/v1"}
_ASK_USAGE_ENDPOINTS = frozenset({"chat/completions", "completions"})


class ProxyReceiver:
    def __init__(self, components: Components) -> None:
        self.settings = components.settings
        self.config = components.settings.proxy
        self.auth = components.auth
        self.pool = UpstreamPool(self.config)
        self.buffer = CaptureBuffer(
            components.sink,
            to_trace,
            size=self.config.buffer_size,
            batch_size=self.config.batch_size,
            flush_interval_s=self.config.flush_interval_s,
        )

    def routes(self) -> list[BaseRoute]:
        if not self.config.enabled:
            return []
        return [Mount(prefix, app=_Endpoint(self, name)) for name, prefix in _PREFIXES.items()]

    async def start(self) -> None:
        await self.pool.start()
        await self.buffer.start()

    async def shutdown(self) -> None:
        await self.buffer.shutdown()
        await self.pool.close()

    def base_url(self, provider: str, customer_id: str) -> str:
        customer = self.settings.customers.get(customer_id)
        override = None
        if customer is not None:
            proxy = customer.proxy
            anthropic = provider == "anthropic"
            override = proxy.anthropic_base_url if anthropic else proxy.openai_base_url
        if override:
            return override
        if provider == "anthropic":
            return self.settings.anthropic_base_url
        return self.settings.openai_base_url

    async def handle(self, provider: str, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        start_ms = time.time_ns() // 1_000_000
        forward, untrace = request_headers(scope["headers"])
        try:
            if not untrace.key:
                raise Unauthorized("missing Untrace key: send 'X-Untrace-Key: <key>'")
            api_key = await self.auth.authenticate(untrace.key, "proxy")
            body = await _read_body(receive, self.config.max_request_bytes)
        except IngestError as exc:
            await send_error(send, provider, exc.status, exc.type, exc.message)
            return
        path = _remainder(scope, _PREFIXES[provider])
        base = self.base_url(provider, api_key.customer_id)
        url = base.rstrip("/") + path
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        method = scope["method"]
        endpoint = captured_endpoint(provider, path) if self.config.capture else None
        exchange = None
        upstream_body = body
        if endpoint is not None and method == "POST":
            exchange = Exchange(
                provider, endpoint, api_key.customer_id, untrace, body, start_ms, t0
            )
            if (
                provider == "openai"
                and endpoint in _ASK_USAGE_ENDPOINTS
                and self.config.openai_stream_usage
                and b'"stream"' in body
            ):
                upstream_body, exchange.injected_usage = ask_for_usage(body)
                if exchange.injected_usage:
                    # the added usage chunk must be cut from the bytes the client gets,
                    # which needs them uncompressed; identity is always an allowed answer
                    forward = with_identity_encoding(forward)
        try:
            response = await self.pool.send(method, url, forward, upstream_body, base)
        except UpstreamError as exc:
            if exchange is not None:
                exchange.error = (exc.type, exc.message)
                exchange.t_end = time.perf_counter()
                self.buffer.put(exchange)
            await send_error(send, provider, exc.status, exc.type, exc.message, exc.retry_after)
            return
        try:
            await relay(response, exchange, receive, send, provider, base, self.config)
        finally:
            response.release()
            if exchange is not None:
                exchange.t_end = exchange.t_end if exchange.t_end > t0 else time.perf_counter()
                self.buffer.put(exchange)


class _Endpoint:
    """The ASGI app mounted at one provider's prefix."""

    def __init__(self, receiver: ProxyReceiver, provider: str) -> None:
        self.receiver = receiver
        self.provider = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.receiver.handle(self.provider, scope, receive, send)


def _remainder(scope: Scope, prefix: str) -> str:
    """The request path after the provider prefix, still percent-encoded."""
    raw = scope.get("raw_path")
    path: str = raw.decode("latin-1") if raw else scope["path"]
    root = scope.get("app_root_path") or ""
    if root and path.startswith(root):
        path = path[len(root) :]
    index = path.find(prefix)
    return path[index + len(prefix) :] if index >= 0 else path


async def _read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        parts.append(part)
    return b"".join(parts)


async def send_error(
    send: Send,
    provider: str,
    status: int,
    type_: str,
    message: str,
    retry_after: float | None = None,
) -> None:
    body = error_body(provider, type_, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after:
        headers.append((b"retry-after", str(math.ceil(retry_after)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_receiver(components: Components) -> Any:
    return ProxyReceiver(components)
