"""Client configuration: one frozen dataclass, plus the two environment variables the
module-level ``untrace.init`` reads (``UNTRACE_API_KEY``, ``UNTRACE_BASE_URL``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["DEFAULT_BASE_URL", "Config", "env_api_key", "env_base_url"]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class Config:
    """How the client queues, batches and sends traces.

    Every field has a default; ``Config()`` is the usual choice.
    """

    #: Traces held in memory before the oldest is evicted (and counted as dropped).
    max_queue_size: int = 1000
    #: A batch is sent when it reaches this many traces ...
    max_batch_size: int = 100
    #: ... or this many bytes of JSON (before gzip) ...
    max_batch_bytes: int = 1_000_000
    #: ... or when its oldest trace has waited this long (seconds).
    flush_interval: float = 1.0
    #: Gzip request bodies (the server accepts ``Content-Encoding: gzip``).
    gzip: bool = True
    #: Timeout of one HTTP request to the server (seconds).
    request_timeout: float = 10.0
    #: Retries of one batch after 429, 5xx or a network error, before it is dropped.
    max_retries: int = 5
    #: First backoff (seconds); doubles per retry with jitter, capped at ``max_backoff``.
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    #: How long the exit hook waits for queued traces to be sent (seconds).
    shutdown_timeout: float = 10.0
    #: Register an ``atexit`` hook that flushes before the interpreter exits.
    flush_at_exit: bool = True
    #: Instrumented OpenAI chat streams ask for token usage
    #: (``stream_options.include_usage``) when the caller did not, and hide the extra
    #: usage chunk from the caller. Turn off for OpenAI-compatible servers that reject
    #: ``stream_options``.
    openai_stream_usage: bool = True
    #: Set to False to make every call a cheap no-op (tests, local runs).
    enabled: bool = True
    #: Added to every trace's ``metadata`` unless the trace sets them itself.
    application_id: str | None = None
    environment: str | None = None
    version: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_queue_size", "max_batch_size", "max_batch_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"Config.{name} must be at least 1")
        for name in ("flush_interval", "request_timeout", "initial_backoff", "max_backoff"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Config.{name} must be positive")
        if self.max_retries < 0 or self.shutdown_timeout < 0:
            raise ValueError("Config.max_retries and Config.shutdown_timeout must not be negative")

    def default_metadata(self) -> dict[str, object]:
        meta: dict[str, object] = {}
        if self.application_id is not None:
            meta["applicationId"] = self.application_id
        if self.environment is not None:
            meta["environment"] = self.environment
        if self.version is not None:
            meta["version"] = self.version
        if self.tags:
            meta["tags"] = dict(self.tags)
        return meta


def env_api_key() -> str | None:
    return os.environ.get("UNTRACE_API_KEY") or None


def env_base_url() -> str:
    return os.environ.get("UNTRACE_BASE_URL") or DEFAULT_BASE_URL
