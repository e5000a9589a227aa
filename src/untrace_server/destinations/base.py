"""The Destination protocol every connector implements, and the one shared HTTP status
classifier.

A connector is one module with one public class. It is built from a pydantic config
model (``Config`` class attribute) validated at startup and when saved through the API;
``delivery/`` stacks batching, retries, the circuit breaker and the dead-letter queue
around ``send_batch``: a connector only sends.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import pydantic

from untrace_server.destinations.egress import EgressPolicy
from untrace_server.errors import PermanentError, RetryableError
from untrace_server.model import Trace

__all__ = [
    "RETRYABLE_STATUSES",
    "BatchResult",
    "Destination",
    "DestinationConfig",
    "DestinationContext",
    "HealthStatus",
    "classify_http_status",
    "parse_retry_after",
]

# One place for what is worth retrying (OTLP spec, LangSmith SDK, Langfuse, Helicone).
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class DestinationConfig(pydantic.BaseModel):
    """Base of every connector's config model: unknown keys are an error."""

    model_config = pydantic.ConfigDict(extra="forbid")


@dataclass(frozen=True)
class DestinationContext:
    """What a connector knows about where it runs."""

    destination_id: str
    customer_id: str
    data_dir: str = "."
    egress: EgressPolicy | None = None  # where the connector may connect; None: anywhere


@dataclass
class BatchResult:
    delivered: int
    detail: str = ""


@dataclass
class HealthStatus:
    healthy: bool
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Destination(Protocol):
    Config: ClassVar[type[DestinationConfig]]

    async def start(self) -> None: ...

    async def send_batch(self, traces: Sequence[Trace]) -> BatchResult:
        """Deliver all of ``traces`` or raise RetryableError / PermanentError /
        PartialDeliveryError."""
        ...

    async def health_check(self) -> HealthStatus: ...

    async def shutdown(self) -> None:
        """Idempotent, and safe without start."""
        ...


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify_http_status(
    status: int, *, body: str = "", retry_after: str | None = None, what: str = "destination"
) -> None:
    """Return if ``status`` is a success; raise RetryableError or PermanentError otherwise."""
    if 200 <= status < 300:
        return
    snippet = body[:300].strip()
    message = f"{what} answered HTTP {status}" + (f": {snippet}" if snippet else "")
    if status in RETRYABLE_STATUSES or status >= 500:
        raise RetryableError(message, retry_after=parse_retry_after(retry_after))
    raise PermanentError(message)
