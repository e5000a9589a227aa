"""When to try a failed delivery again: capped exponential backoff with jitter, and never
sooner than the destination's Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetrySchedule"]


@dataclass(frozen=True)
class RetrySchedule:
    initial_s: float = 1.0
    multiplier: float = 2.0
    max_s: float = 300.0
    jitter: float = 0.1  # fraction of the delay added at random
    max_attempts: int = 10

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.initial_s * self.multiplier ** max(attempt - 1, 0), self.max_s)
        delay = base + random.random() * base * self.jitter
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
