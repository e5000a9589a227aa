"""The routing every customer has without rules: each trace to ``defaultDestinations``."""

from __future__ import annotations

from collections.abc import Sequence

from untrace_server.model import Trace
from untrace_server.pipeline.base import Route

__all__ = ["DefaultPipeline"]


class DefaultPipeline:
    def __init__(self, destinations: Sequence[str]) -> None:
        self.destinations = list(destinations)

    def process(self, trace: Trace) -> list[Route]:
        return [Route(destination_id=d, trace=trace) for d in self.destinations]
