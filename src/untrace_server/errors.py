"""Untrace's errors, grouped by what the caller can do about them.

UntraceError
├── ConfigError                 bad configuration: startup exits 2 with one line
├── IngestError                 the request is refused; nothing was written
│   ├── InvalidPayload          400 malformed / 415 content type / 422 schema
│   ├── Unauthorized            401 no, unknown or expired key
│   ├── Forbidden               403 key lacks the scope
│   ├── NotFound                404 (also for another customer's objects)
│   ├── Conflict                409
│   ├── PayloadTooLarge         413
│   └── RateLimited             429 + Retry-After
├── QueueError
│   ├── QueueFull               disk budget reached → 503 + Retry-After
│   └── QueueUnavailable        the queue cannot be used → 503
└── DeliveryError               raised by Destination.send_batch
    ├── RetryableError          try again later (optionally after retry_after s)
    ├── PermanentError          will never succeed as sent → dead-letter queue
    └── PartialDeliveryError    some items failed: ``failed`` maps index → error
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigError",
    "Conflict",
    "DeliveryError",
    "Forbidden",
    "IngestError",
    "InvalidPayload",
    "NotFound",
    "PartialDeliveryError",
    "PayloadTooLarge",
    "PermanentError",
    "QueueError",
    "QueueFull",
    "QueueUnavailable",
    "RateLimited",
    "RetryableError",
    "Unauthorized",
    "UntraceError",
]


class UntraceError(Exception):
    pass


class ConfigError(UntraceError):
    pass


class IngestError(UntraceError):
    status = 400
    type = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}


class InvalidPayload(IngestError):
    def __init__(self, message: str, *, status: int = 400, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status
        self.type = {400: "malformed", 415: "unsupported_media_type", 422: "invalid_trace"}.get(
            status, "invalid_request"
        )


class Unauthorized(IngestError):
    status = 401
    type = "unauthorized"


class Forbidden(IngestError):
    status = 403
    type = "forbidden"


class NotFound(IngestError):
    status = 404
    type = "not_found"


class Conflict(IngestError):
    status = 409
    type = "conflict"


class PayloadTooLarge(IngestError):
    status = 413
    type = "payload_too_large"


class RateLimited(IngestError):
    status = 429
    type = "rate_limited"


class QueueError(UntraceError):
    pass


class QueueFull(QueueError):
    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueUnavailable(QueueError):
    pass


class DeliveryError(UntraceError):
    pass


class RetryableError(DeliveryError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    pass


class PartialDeliveryError(DeliveryError):
    """Some items of a batch failed. ``failed`` maps the index in the batch to the error
    (a RetryableError or a PermanentError); every other item was delivered."""

    def __init__(self, message: str, failed: dict[int, DeliveryError]) -> None:
        super().__init__(message)
        self.failed = failed
