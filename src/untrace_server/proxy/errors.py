"""The proxy's own failures, and how each provider's clients expect to see an error.

UpstreamError                  the proxy could not get an answer from the upstream
├── UpstreamUnavailable   502  connection refused, reset, DNS, bad response
├── BreakerOpen           503  too many recent failures: answered at once, Retry-After
└── UpstreamTimeout       504  connect or read timeout

An error the upstream itself answered (4xx/5xx) is not an UpstreamError: its status and
body are relayed unchanged.
"""

from __future__ import annotations

import msgspec

from untrace_server.errors import UntraceError

__all__ = [
    "BreakerOpen",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "error_body",
]


class UpstreamError(UntraceError):
    status = 502
    type = "upstream_unavailable"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    pass


class BreakerOpen(UpstreamError):
    status = 503
    type = "upstream_circuit_open"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "upstream_timeout"


_encode = msgspec.json.Encoder().encode


def error_body(provider: str, type_: str, message: str) -> bytes:
    """An error body in the shape the provider's SDK parses."""
    if provider == "anthropic":
        return _encode({"type": "error", "error": {"type": type_, "message": message}})
    return _encode({"error": {"message": message, "type": type_, "param": None, "code": type_}})
