"""The seam between the worker and the processing pipeline.

The worker hands every trace it consumes to ``Pipeline.process``; the pipeline samples,
routes, transforms and enriches, and answers one ``Route`` per destination, carrying
the trace exactly as that destination must receive it. An empty list means the trace
goes nowhere (sampled out, or no destination).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from untrace_server.model import Trace

__all__ = ["Pipeline", "Route"]


@dataclass
class Route:
    destination_id: str
    trace: Trace
    rule_ids: list[str] = field(default_factory=list)


class Pipeline(Protocol):
    def process(self, trace: Trace) -> list[Route]: ...
