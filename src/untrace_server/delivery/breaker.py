"""A circuit breaker per destination: CLOSED → (N consecutive failures) → OPEN →
(reset timeout) → HALF_OPEN → one trial batch → CLOSED or OPEN again.

While OPEN the deliverer leases nothing: the destination's data waits on disk, and no
attempts are spent against a platform that is down."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._open_for = reset_timeout_s
        self._retry_after = 0.0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self.wait_time() == 0.0:
            self._state = BreakerState.HALF_OPEN
        return self._state

    def wait_time(self) -> float:
        """Seconds until a trial is allowed (0 when closed or half-open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._open_for - self._clock())

    def allow(self) -> bool:
        return self.state is not BreakerState.OPEN

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._retry_after = 0.0

    def record_failure(self, retry_after: float | None = None) -> None:
        """Count a retryable failure; the longest Retry-After of the streak sets how long
        the breaker stays open (never shorter than the reset timeout)."""
        self._failures += 1
        self._retry_after = max(self._retry_after, retry_after or 0.0)
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
            self._open_for = max(self.reset_timeout_s, self._retry_after)
