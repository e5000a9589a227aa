"""Proxy settings (the ``proxy`` section, and per customer ``customers.<id>.proxy``).

The upstream base URLs themselves are top-level settings (``openai_base_url``,
``anthropic_base_url``, env ``UNTRACE_OPENAI_BASE_URL`` / ``UNTRACE_ANTHROPIC_BASE_URL``);
a customer may override them here.
"""

from __future__ import annotations

import pydantic

__all__ = ["CustomerProxyConfig", "ProxyConfig"]


class ProxyConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    enabled: bool = True
    connect_timeout_s: float = pydantic.Field(5.0, gt=0)
    # longest silence allowed between two reads from the upstream (not the whole call)
    read_timeout_s: float = pydantic.Field(600.0, gt=0)
    pool_size: int = pydantic.Field(256, gt=0)  # connections per upstream host
    keepalive_s: float = pydantic.Field(60.0, gt=0)
    connect_retries: int = pydantic.Field(2, ge=0)  # only before any byte was sent
    breaker_failures: int = pydantic.Field(5, gt=0)
    breaker_reset_s: float = pydantic.Field(10.0, gt=0)
    max_request_bytes: int = pydantic.Field(32 * 1024 * 1024, gt=0)
    # capture: a bounded buffer drained in batches by a background task
    capture: bool = True
    buffer_size: int = pydantic.Field(10_000, gt=0)
    batch_size: int = pydantic.Field(256, gt=0)
    flush_interval_s: float = pydantic.Field(0.05, gt=0)
    max_capture_bytes: int = pydantic.Field(4 * 1024 * 1024, gt=0)  # per body side copy
    # ask an OpenAI stream for usage (stream_options.include_usage) and hide that chunk
    openai_stream_usage: bool = True


class CustomerProxyConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    openai_base_url: str | None = None
    anthropic_base_url: str | None = None
