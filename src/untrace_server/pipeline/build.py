"""Build each customer's pipeline from its ``routing`` document (DESIGN §7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from untrace_server.config import CustomerConfig
from untrace_server.pipeline.base import Pipeline
from untrace_server.pipeline.config import build_pipeline

__all__ = ["build_pipelines"]


def build_pipelines(
    customers: Mapping[str, CustomerConfig],
    *,
    pricing: dict[str, Any] | None = None,
    previous: Mapping[str, Pipeline] | None = None,
) -> dict[str, Pipeline]:
    """One compiled pipeline per customer (rules, sampling, transformers, enrichers).
    Raises ConfigError (one line) on an invalid routing document. ``previous`` hands
    rate-limit state over on a hot reload."""
    pipelines: dict[str, Pipeline] = {}
    for customer_id, customer in customers.items():
        enabled = {d.id for d in customer.destinations if d.enabled}
        pipelines[customer_id] = build_pipeline(
            customer.routing,
            customer_id=customer_id,
            known_destinations=enabled,
            pricing_overrides=pricing,
            previous=(previous or {}).get(customer_id),
        )
    return pipelines
