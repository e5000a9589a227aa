"""Build each customer's pipeline from its ``routing`` document."""

from __future__ import annotations

from untrace_server.config import Settings
from untrace_server.pipeline.base import Pipeline
from untrace_server.pipeline.default import DefaultPipeline

__all__ = ["build_pipelines"]


def build_pipelines(settings: Settings) -> dict[str, Pipeline]:
    pipelines: dict[str, Pipeline] = {}
    for customer_id, customer in settings.customers.items():
        enabled = {d.id for d in customer.destinations if d.enabled}
        defaults = [d for d in customer.routing.get("defaultDestinations", []) if d in enabled]
        pipelines[customer_id] = DefaultPipeline(defaults)
    return pipelines
