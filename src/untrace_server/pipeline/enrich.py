"""Enrichers (always on, cheap): fill what a trace lacks, never overwrite what it has.

- ``metrics.latency_ms`` from ``endTime - startTime``;
- ``provider`` inferred from the model name;
- ``metrics.estimated_cost`` (USD) from ``response.usage`` and the bundled, dated pricing
  table (``pricing.json``; input, cached-input and output prices per 1M tokens), which
  config can override per model;
- ``metrics.tokens_per_second``: completion tokens over generation time (latency minus
  time to first token when known).

Model names match the table by longest prefix at a ``-``/``:``/``@`` boundary after
normalising (lower case, ``vendor/`` and Bedrock ``vendor.`` prefixes dropped), so
``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini`` and ``gpt-4.5`` is not ``gpt-4``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import msgspec

from untrace_server.errors import ConfigError
from untrace_server.model import Trace

__all__ = ["Enricher", "Price", "PricingTable", "infer_provider", "normalize_model"]

_BOUNDARY = ("-", ":", "@", "_")
_PROVIDER_PREFIXES = (
    (("gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding", "davinci", "babbage"), "openai"),
    (("claude",), "anthropic"),
    (("gemini", "gemma", "text-bison", "chat-bison"), "google"),
    (
        ("mistral", "mixtral", "codestral", "ministral", "pixtral", "open-mistral", "magistral"),
        "mistral",
    ),
    (("llama", "meta-llama"), "meta"),
    (("deepseek",), "deepseek"),
    (("command",), "cohere"),
    (("grok",), "xai"),
    (("qwen",), "alibaba"),
)
_VENDOR_DOTS = ("us.", "eu.", "apac.", "anthropic.", "meta.", "mistral.", "amazon.", "cohere.")


@dataclass(frozen=True)
class Price:
    provider: str | None
    input: float
    output: float
    cached_input: float


def normalize_model(model: str) -> str:
    name = model.strip().lower().rsplit("/", 1)[-1]
    changed = True
    while changed:
        changed = False
        for prefix in _VENDOR_DOTS:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name.removeprefix("meta-")


def infer_provider(model: str) -> str | None:
    name = normalize_model(model)
    for prefixes, provider in _PROVIDER_PREFIXES:
        if name.startswith(prefixes):
            return provider
    return None


def _price(name: str, entry: dict[str, Any]) -> Price:
    try:
        inp = float(entry["input"])
        out = float(entry.get("output", 0.0))
        cached = float(entry.get("cachedInput", inp))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            f"pricing for {name!r} needs numbers 'input', 'output' (and optional 'cachedInput')"
        ) from None
    if min(inp, out, cached) < 0:
        raise ConfigError(f"pricing for {name!r}: prices cannot be negative")
    provider = entry.get("provider")
    return Price(provider if isinstance(provider, str) else None, inp, out, cached)


class PricingTable:
    def __init__(self, models: dict[str, dict[str, Any]], as_of: str = "") -> None:
        self.as_of = as_of
        self.prices = {normalize_model(k): _price(k, v) for k, v in models.items()}
        self._keys = sorted(self.prices, key=len, reverse=True)
        self._cache: dict[str, Price | None] = {}

    @classmethod
    def bundled(cls, overrides: dict[str, Any] | None = None) -> PricingTable:
        data = json.loads(resources.files(__package__).joinpath("pricing.json").read_text())
        models = dict(data["models"])
        for name, entry in (overrides or {}).items():
            if not isinstance(entry, dict):
                raise ConfigError(f"pricing for {name!r} must be an object")
            base = models.get(name, {})
            models[name] = {**base, **entry}
        return cls(models, data.get("asOf", ""))

    def lookup(self, model: str) -> Price | None:
        try:
            return self._cache[model]
        except KeyError:
            pass
        name = normalize_model(model)
        found = None
        for key in self._keys:
            if name.startswith(key) and (len(name) == len(key) or name[len(key)] in _BOUNDARY):
                found = self.prices[key]
                break
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[model] = found
        return found


class Enricher:
    def __init__(self, pricing: PricingTable) -> None:
        self.pricing = pricing

    def enrich(self, trace: Trace) -> Trace:
        metrics = trace.metrics
        changes: dict[str, Any] = {}
        latency = metrics.latency_ms
        if latency is None and trace.end_time >= trace.start_time:
            latency = changes["latency_ms"] = float(trace.end_time - trace.start_time)
        price = self.pricing.lookup(trace.model) if trace.model else None
        usage = trace.response.usage
        if metrics.estimated_cost is None and price is not None and usage is not None:
            cached = min(usage.cached_tokens or 0, usage.prompt_tokens)
            cost = (
                (usage.prompt_tokens - cached) * price.input
                + cached * price.cached_input
                + usage.completion_tokens * price.output
            ) / 1_000_000
            changes["estimated_cost"] = round(cost, 10)
        if metrics.tokens_per_second is None and usage is not None and usage.completion_tokens:
            ttft = metrics.time_to_first_token_ms
            gen_ms = latency - ttft if latency and ttft is not None and ttft < latency else latency
            if gen_ms:
                changes["tokens_per_second"] = round(usage.completion_tokens * 1000 / gen_ms, 3)
        provider = trace.provider
        if provider is None and trace.model:
            provider = (price.provider if price else None) or infer_provider(trace.model)
        if not changes and provider == trace.provider:
            return trace
        new_metrics = msgspec.structs.replace(metrics, **changes) if changes else metrics
        return msgspec.structs.replace(trace, metrics=new_metrics, provider=provider)
