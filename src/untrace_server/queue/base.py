"""The Queue protocol: durable named topics with leases, acks and a dead-letter state.

Topics: ``traces`` (ingest → worker) and ``deliver.<customer>/<destination>`` (worker →
deliverer). A consumer leases messages for a visibility timeout; a message not acked
or nacked before it ends becomes visible again (a crashed consumer's work comes back).
``nack`` makes a message visible again after a delay (retries). ``dead`` moves it to the
dead-letter state with its last error; ``replay_dead`` makes dead messages deliverable.
Acked messages of the ``traces`` topic are retained (default 7 days) for replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "TRACES_TOPIC",
    "DeadLetter",
    "Message",
    "MessageId",
    "Queue",
    "QueueStats",
    "delivery_topic",
]

TRACES_TOPIC = "traces"
DELIVERY_PREFIX = "deliver."


def delivery_topic(customer_id: str, destination_id: str) -> str:
    return f"{DELIVERY_PREFIX}{customer_id}/{destination_id}"


# An opaque message id: an integer rowid (SQLite, memory) or "topic\x00stream-id" (Redis).
MessageId = int | str


@dataclass(frozen=True)
class Message:
    id: MessageId
    topic: str
    payload: bytes
    attempts: int  # how many times this message has been leased, this lease included
    created_at: float  # Unix seconds
    key: str = ""  # the trace id


@dataclass(frozen=True)
class DeadLetter:
    id: MessageId
    topic: str
    key: str
    payload: bytes
    attempts: int
    error: str
    created_at: float
    dead_at: float


@dataclass(frozen=True)
class DeliveryRecord:
    """One message of a trace as the status API sees it (queues that keep acked
    deliveries — ``supports_status = True`` — answer ``trace_status``)."""

    id: int
    topic: str
    state: str  # pending, retrying, delivered, dead (``traces``: queued, processed)
    attempts: int
    error: str | None
    created_at: float
    done_at: float | None


@dataclass(frozen=True)
class QueueStats:
    pending: dict[str, int]  # topic → messages not yet acked (ready, leased or delayed)
    dead: dict[str, int]  # topic → dead letters
    bytes_used: int
    bytes_budget: int


@runtime_checkable
class Queue(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[MessageId]:
        """Durably append (key, payload) items; returns after they are committed.
        Raises QueueFull when the disk budget is reached (nothing is written)."""
        ...

    async def lease(self, topic: str, max_items: int, visibility_s: float) -> list[Message]:
        """Take up to ``max_items`` visible messages, oldest first, hidden for visibility_s."""
        ...

    async def ack(self, ids: Sequence[MessageId]) -> None: ...

    async def nack(self, ids: Sequence[MessageId], delay_s: float) -> None:
        """Make messages visible again after ``delay_s``."""
        ...

    async def dead(self, ids: Sequence[MessageId], error: str) -> None:
        """Move messages to the dead-letter state with their last error."""
        ...

    async def list_dead(self, topic: str | None = None, limit: int = 100) -> list[DeadLetter]: ...

    async def replay_dead(
        self, topic: str | None = None, ids: Sequence[MessageId] | None = None
    ) -> int:
        """Make dead letters deliverable again (attempts reset); returns how many."""
        ...

    async def wait(self, topic: str, timeout: float) -> None:
        """Return when something may be visible on ``topic``, or after ``timeout``."""
        ...

    async def stats(self) -> QueueStats: ...

    async def ping(self) -> None:
        """Raise QueueUnavailable if the queue cannot be used."""
        ...
