"""Outbound HTTP for connectors: one pooled httpx client per connector, and the ONE place
where httpx's exceptions become Untrace delivery errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from untrace_server.destinations.base import classify_http_status
from untrace_server.destinations.egress import EgressPolicy, guard_transport
from untrace_server.errors import PermanentError, RetryableError

__all__ = ["PayloadTooLarge", "make_client", "request"]

USER_AGENT = "untrace-server/0.1"


class PayloadTooLarge(PermanentError):
    """HTTP 413: never resend as is; the batcher splits the batch and sends the halves."""


def make_client(
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
    max_connections: int = 16,
    transport: httpx.AsyncBaseTransport | None = None,
    egress: EgressPolicy | None = None,
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=8)
    if transport is None and egress is not None:
        guarded = httpx.AsyncHTTPTransport(limits=limits)
        guard_transport(guarded, egress)
        transport = guarded
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
        limits=limits,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        transport=transport,
        follow_redirects=False,
    )


async def request(
    client: httpx.AsyncClient | None,
    method: str,
    url: str,
    *,
    what: str,
    ok: frozenset[int] = frozenset(),
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; return the response when the status is a success (or in
    ``ok``), raise RetryableError / PermanentError / PayloadTooLarge otherwise."""
    if client is None:
        raise RetryableError(f"{what}: connector not started")
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:  # connect, read, write, protocol errors
        raise RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc
    except httpx.InvalidURL as exc:
        raise PermanentError(f"{what}: invalid URL: {exc}") from exc
    if response.status_code in ok:
        return response
    if response.status_code == 413:
        raise PayloadTooLarge(f"{what} answered HTTP 413 (payload too large)")
    classify_http_status(
        response.status_code,
        body=response.text,
        what=what,
        retry_after=response.headers.get("retry-after"),
    )
    return response
