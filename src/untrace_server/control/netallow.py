"""Where a request comes from, and per-request auth context for the response.

``RequestContextMiddleware`` (pure ASGI, so context variables reach the endpoint) finds
the client address — the socket peer, or, only when the peer is a configured trusted
proxy, the right-most untrusted address of ``X-Forwarded-For`` — and adds the
``X-RateLimit-*`` headers the authenticator recorded to the response.
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "RequestContext",
    "RequestContextMiddleware",
    "current_context",
    "ip_allowed",
    "parse_networks",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class RequestContext:
    client_ip: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # added to the response
    key_id: str | None = None  # the authenticated key, for the traces/s limit


_context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "untrace_request", default=None
)


def current_context() -> RequestContext | None:
    return _context.get()


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parse CIDRs (or bare addresses); raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def ip_allowed(address: str | None, cidrs: Iterable[str]) -> bool:
    networks = parse_networks(cidrs)
    if not networks:
        return True
    return address is not None and _in(address, networks)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    client = scope.get("client")
    peer: str | None = client[0] if client else None
    if peer is None or not trusted or not _in(peer, trusted):
        return peer
    forwarded: list[str] = [
        part.strip()
        for name, value in scope.get("headers", [])
        if name == b"x-forwarded-for"
        for part in value.decode("latin-1").split(",")
        if part.strip()
    ]
    for hop in reversed(forwarded):
        if not _in(hop, trusted):
            return hop
    return forwarded[0] if forwarded else peer


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = RequestContext(client_address(scope, self.trusted))
        token = _context.set(context)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and context.headers:
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in context.headers.items()
                    if k.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _context.reset(token)
