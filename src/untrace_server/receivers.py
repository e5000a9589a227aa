"""The receivers the app mounts besides native ingest.

Each module named here defines ``build_receiver(components) -> Receiver`` (an object with
``routes()``, and optionally async ``start()``/``shutdown()`` run in the app's lifespan).
A module that is not part of this installation is skipped; one that fails to import is
an error.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from untrace_server.app import Components

__all__ = ["RECEIVER_MODULES", "build_receivers"]

RECEIVER_MODULES = (
    "untrace_server.proxy.receiver",  # /openai/v1/*, /anthropic/v1/*
    "untrace_server.ingest.otlp",  # POST /v1/traces
    "untrace_server.ingest.langsmith",  # /langsmith/*
    "untrace_server.ingest.langfuse",  # /langfuse/*
    "untrace_server.ingest.webhooks",  # POST /api/v1/webhooks/{source}
)


def build_receivers(components: Components) -> list[Any]:
    receivers = []
    for name in RECEIVER_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        receivers.append(module.build_receiver(components))
    return receivers
