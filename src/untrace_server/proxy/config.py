"""Proxy settings (the ``proxy`` section, and per customer ``customers.<id>.proxy``)."""

from __future__ import annotations

import pydantic

__all__ = ["CustomerProxyConfig", "ProxyConfig"]


class ProxyConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class CustomerProxyConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    openai_base_url: str | None = None
    anthropic_base_url: str | None = None
