"""Turning one proxied exchange into a Trace, after the response went out.

``Exchange`` is all the request path records: raw bytes and clock readings. Parsing
happens later, in the capture buffer's drainer (``to_trace``), one module per provider.
"""

from __future__ import annotations

from untrace_server import model
from untrace_server.proxy.capture import anthropic, openai
from untrace_server.proxy.capture.base import Exchange

__all__ = ["Exchange", "captured_endpoint", "to_trace"]

_OPENAI = frozenset({"chat/completions", "completions", "embeddings", "responses"})
_ANTHROPIC = frozenset({"messages"})


def captured_endpoint(provider: str, path: str) -> str | None:
    """The endpoint name when a call to ``path`` (relative to ``/v1``) becomes a trace."""
    endpoint = path.strip("/")
    if provider == "anthropic":
        return endpoint if endpoint in _ANTHROPIC else None
    if endpoint.startswith("deployments/"):  # Azure OpenAI: deployments/<name>/chat/...
        endpoint = endpoint.split("/", 2)[2] if endpoint.count("/") >= 2 else endpoint
    return endpoint if endpoint in _OPENAI else None


def to_trace(exchange: Exchange) -> model.Trace | None:
    if exchange.provider == "anthropic":
        return anthropic.build(exchange)
    return openai.build(exchange)
