"""Prometheus metrics, with the seed's names (seed §7.1). One module-level registry
shared by the process; ``/metrics`` renders it."""

from __future__ import annotations

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

__all__ = [
    "API_LATENCY",
    "API_REQUESTS",
    "DEAD_LETTERS",
    "DESTINATION_LATENCY",
    "DESTINATION_REQUESTS",
    "DROPPED",
    "PROCESSING_LATENCY",
    "QUEUE_BYTES",
    "QUEUE_DEPTH",
    "REGISTRY",
    "TRACES_PROCESSED",
    "render",
]

disable_created_metrics()  # type: ignore[no-untyped-call]  # keep /metrics readable: no *_created series

# the default registry: process metrics come with it, and plugins' metrics land in it too

API_REQUESTS = Counter(
    "untrace_api_requests_total",
    "HTTP requests answered",
    ["method", "endpoint", "status"],
    registry=REGISTRY,
)
API_LATENCY = Histogram(
    "untrace_api_latency_seconds",
    "HTTP request latency",
    ["method", "endpoint"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
    registry=REGISTRY,
)
TRACES_PROCESSED = Counter(
    "untrace_traces_processed_total",
    "Traces by outcome per destination (delivered, retried, dead, routed)",
    ["customer_id", "destination", "status"],
    registry=REGISTRY,
)
PROCESSING_LATENCY = Histogram(
    "untrace_processing_latency_seconds",
    "Time spent per pipeline stage",
    ["stage"],
    registry=REGISTRY,
)
DESTINATION_REQUESTS = Counter(
    "untrace_destination_requests_total",
    "Batches sent to destinations by result",
    ["destination", "status"],
    registry=REGISTRY,
)
DESTINATION_LATENCY = Histogram(
    "untrace_destination_latency_seconds",
    "Time to send one batch to a destination",
    ["destination"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "untrace_queue_depth", "Messages not yet acked, per topic", ["topic"], registry=REGISTRY
)
DEAD_LETTERS = Gauge(
    "untrace_dead_letters",
    "Dead letters waiting for replay, per topic",
    ["topic"],
    registry=REGISTRY,
)
QUEUE_BYTES = Gauge("untrace_queue_bytes", "Bytes used by the queue", registry=REGISTRY)
DROPPED = Counter(
    "untrace_dropped_total",
    "Traces dropped on purpose, by where and why (never silent)",
    ["where", "reason"],
    registry=REGISTRY,
)
QUEUE_EVICTED = Counter(
    "untrace_queue_evicted_total",
    "Acked messages (retained traces, delivery records) evicted before their retention "
    "ended, to stay within the disk budget: the replay window is shrinking",
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "untrace_circuit_breaker_state",
    "Circuit breaker per destination: 0 closed, 1 half-open, 2 open",
    ["destination"],
    registry=REGISTRY,
)


def render() -> bytes:
    return generate_latest(REGISTRY)
