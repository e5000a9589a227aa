"""Untrace's own spans (self-tracing, seed §7.2), exported with OTLP/HTTP to the
operator's collector when ``tracing.endpoint`` is set.

Spans, one per unit of work rather than one per trace so the cost stays flat under load:
- ``<METHOD> <route>`` (SERVER) for every HTTP request, the proxy's included, continuing
  the caller's W3C ``traceparent`` when it sends one;
- ``untrace.route`` for each batch the worker routes (traces in, routes out);
- ``untrace.deliver`` for each batch a deliverer sends (destination, size, outcome,
  the error when it fails).
Without an endpoint the OpenTelemetry API's no-op tracer answers: nothing is recorded and
the request path does not even look at headers. Do not point the endpoint at this same
server's ``/v1/traces``: its own spans would become traces that make more spans.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from opentelemetry import propagate, trace
from opentelemetry.trace import Tracer

__all__ = ["configure_tracing", "enabled", "extract_context", "tracer"]

tracer: Tracer = trace.get_tracer("untrace")
_enabled = False


def enabled() -> bool:
    return _enabled


def configure_tracing(
    endpoint: str | None,
    *,
    headers: dict[str, str] | None = None,
    sample_ratio: float = 1.0,
    service_name: str = "untrace",
    role: str = "all",
) -> Callable[[], None] | None:
    """Install a tracer provider exporting to ``endpoint``; returns its shutdown (which
    flushes), or None when tracing is off."""
    global _enabled
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create(
        {
            "service.name": service_name,
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
            "untrace.role": role,
        }
    )
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio))
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, headers=headers or {}))
    )
    trace.set_tracer_provider(provider)
    _enabled = True
    return provider.shutdown


def extract_context(raw_headers: list[tuple[bytes, bytes]]) -> object:
    """The caller's trace context from ASGI headers (``traceparent``, ``tracestate``)."""
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in raw_headers
        if name in (b"traceparent", b"tracestate")
    }
    return propagate.extract(carrier)
