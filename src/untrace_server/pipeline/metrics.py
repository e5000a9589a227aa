"""The pipeline's Prometheus counters (default registry). Children are cached per label
set by the users, so counting costs an attribute lookup, not a ``labels()`` call."""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["SAMPLING_DROPPED", "TRANSFORM_FAILED"]

SAMPLING_DROPPED = Counter(
    "untrace_sampling_dropped_total",
    "Traces (or one rule's routes of a trace) dropped by sampling, by reason: "
    "sample_rate, rate_limit (global), rule_sample_rate, rule_rate_limit (per rule)",
    ["customer_id", "reason"],
)
TRANSFORM_FAILED = Counter(
    "untrace_transform_failed_total",
    "Routes not delivered because a transformer failed on the trace (fail closed)",
    ["customer_id", "transformer"],
)
