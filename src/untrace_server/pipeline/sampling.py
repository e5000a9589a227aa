"""Sampling: consistent probabilistic, rate-limited, with "always keep" conditions.

Probabilistic sampling is decided from a hash of the trace's *root* id — ``metadata.rootId``
when a receiver set it, else ``parentId`` (a child follows its parent), else its own
``id`` — or of ``sessionId`` with ``key: session``. The hash is BLAKE2b, so every process,
node and redelivery decides the same, and a trace kept at rate 0.1 is also kept at any
higher rate (rates are nested, global and per rule alike).

The rate limit is a token bucket per scope (the customer, or one rule) in this process:
with M workers a customer gets up to M times N traces/s. It is not consistent across
redeliveries; it is a safety valve, not a sampler.

Order: "always keep" first (errors, latency above X, any condition: kept whatever the
rate or the limit say), then the rate, then the bucket (tokens are only spent on traces
the rate kept).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from untrace_server.model import Trace

__all__ = ["Sampler", "TokenBucket", "hash_fraction", "sampling_key"]

_SCALE = 2**64


def sampling_key(trace: Trace, key: str = "trace") -> str:
    """The id a sampling decision hangs on (see the module docstring)."""
    if key == "session" and trace.session_id:
        return trace.session_id
    root = trace.metadata.get("rootId")
    if isinstance(root, str) and root:
        return root
    return trace.parent_id or trace.id


def _hash64(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def hash_fraction(key: str) -> float:
    """The key's position in [0, 1): kept at rate r when below r."""
    return _hash64(key) / _SCALE


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.clock = clock
        self.tokens = self.burst
        self.last = clock()

    def _refill(self) -> float:
        now = self.clock()
        tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return tokens

    def take(self) -> bool:
        self.tokens = self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def peek(self) -> bool:
        """Whether ``take`` would succeed now, without spending a token."""
        self.tokens = self._refill()
        return self.tokens >= 1.0


@dataclass
class SampleDecision:
    keep: bool
    reason: str  # kept | always_keep | sample_rate | rate_limit


class Sampler:
    def __init__(
        self,
        *,
        rate: float = 1.0,
        key: str = "trace",
        bucket: TokenBucket | None = None,
        always_keep: Callable[[Trace], bool] | None = None,
    ) -> None:
        self.rate = rate
        self.key = key
        self.threshold = int(rate * _SCALE)
        self.bucket = bucket
        self.always_keep = always_keep

    def decide(self, trace: Trace, *, consume: bool = True) -> SampleDecision:
        """Keep or drop ``trace``; ``consume=False`` (dry runs) spends no token."""
        if self.always_keep is not None and self.always_keep(trace):
            return SampleDecision(True, "always_keep")
        if self.rate < 1.0 and (
            self.threshold == 0 or _hash64(sampling_key(trace, self.key)) >= self.threshold
        ):
            return SampleDecision(False, "sample_rate")
        if self.bucket is not None and not (self.bucket.take() if consume else self.bucket.peek()):
            return SampleDecision(False, "rate_limit")
        return SampleDecision(True, "kept")


def always_keep_test(
    *,
    errors: bool,
    latency_above_ms: float | None,
    condition: Callable[[Trace], bool] | None,
) -> Callable[[Trace], bool] | None:
    """One test from the "always keep" settings; None when there are none."""
    if not errors and latency_above_ms is None and condition is None:
        return None

    def test(trace: Trace) -> bool:
        if errors and trace.error is not None:
            return True
        latency = trace.metrics.latency_ms
        if latency_above_ms is not None and latency is not None and latency > latency_above_ms:
            return True
        return condition is not None and condition(trace)

    return test
