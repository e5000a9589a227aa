"""Compile a validated ``RoutingConfig`` into a ``RulePipeline``: check destination ids,
build transformers once (one instance per distinct name + config), compile every
condition tree into one matcher function and the samplers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from untrace_server.errors import ConfigError
from untrace_server.pipeline.conditions import compile_condition, compile_matcher
from untrace_server.pipeline.config import RoutingConfig, SamplingConfig, TransformationRef
from untrace_server.pipeline.enrich import Enricher, PricingTable
from untrace_server.pipeline.rules import CompiledRule, RulePipeline, TransformStep
from untrace_server.pipeline.sampling import Sampler, TokenBucket, always_keep_test
from untrace_server.pipeline.transformers import create

__all__ = ["compile_pipeline"]


def _dump(node: Any) -> Any:
    return node.model_dump(by_alias=True, exclude_none=True)


def _check_destinations(ids: list[str], known: set[str], where: str) -> None:
    for dest in ids:
        if dest not in known:
            names = ", ".join(sorted(known)) or "none configured"
            raise ConfigError(f"{where}: unknown destination {dest!r}; known: {names}")


def _sampler(
    config: SamplingConfig | None,
    scope: str,
    where: str,
    previous: dict[str, TokenBucket],
    buckets: dict[str, TokenBucket],
) -> Sampler | None:
    if config is None:
        return None
    bucket = None
    if config.rate_limit is not None:
        old = previous.get(scope)
        if (
            old is not None
            and old.rate == config.rate_limit
            and old.burst
            == float(config.burst if config.burst is not None else max(1.0, config.rate_limit))
        ):
            bucket = old
        else:
            bucket = TokenBucket(config.rate_limit, config.burst)
        buckets[scope] = bucket
    keep = config.always_keep
    test = None
    if keep is not None:
        condition = (
            compile_condition(_dump(keep.conditions), f"{where} alwaysKeep")
            if keep.conditions is not None
            else None
        )
        test = always_keep_test(
            errors=keep.errors, latency_above_ms=keep.latency_above_ms, condition=condition
        )
    return Sampler(rate=config.rate, key=config.key, bucket=bucket, always_keep=test)


def compile_pipeline(
    config: RoutingConfig,
    *,
    customer_id: str,
    known_destinations: set[str],
    pricing_overrides: dict[str, Any] | None = None,
    previous: RulePipeline | None = None,
) -> RulePipeline:
    prefix = f"routing of {customer_id!r}"
    _check_destinations(
        config.default_destinations, known_destinations, f"{prefix}: defaultDestinations"
    )
    old_buckets = previous.buckets if previous is not None else {}
    buckets: dict[str, TokenBucket] = {}
    instances: dict[str, TransformStep] = {}
    ordered = sorted(enumerate(config.rules), key=lambda ir: (-ir[1].priority, ir[0]))
    compiled: list[CompiledRule] = []
    trees: list[tuple[Any, bool, str]] = []
    everywhere = _steps(config.transformations, instances, f"{prefix}: transformations")
    for _index, rule in ordered:
        where = f"{prefix}: rule {rule.id!r}"
        _check_destinations(rule.actions.destinations, known_destinations, where)
        steps = _steps(rule.actions.transformations, instances, where)
        sampler = _sampler(rule.actions.sampling, f"rule:{rule.id}", where, old_buckets, buckets)
        # disabled rules are validated like the others, but never evaluated
        tree = _dump(rule.conditions)
        compile_condition(tree, where)
        if not rule.enabled:
            continue
        trees.append((tree, rule.actions.stop_processing, where))
        compiled.append(
            CompiledRule(
                id=rule.id,
                name=rule.name,
                priority=rule.priority,
                destinations=tuple(dict.fromkeys(rule.actions.destinations)),
                steps=tuple(steps),
                metadata=dict(rule.actions.metadata) if rule.actions.metadata else None,
                sampler=sampler,
                stop=rule.actions.stop_processing,
            )
        )
    sampler = _sampler(
        config.sampling_config, "global", f"{prefix}: samplingConfig", old_buckets, buckets
    )
    return RulePipeline(
        customer_id=customer_id,
        version=config.version,
        rules=compiled,
        matcher=compile_matcher(trees),
        default_destinations=config.default_destinations,
        sampler=sampler,
        enricher=Enricher(PricingTable.bundled(pricing_overrides)),
        buckets=buckets,
        everywhere=everywhere,
    )


def _steps(
    refs: Sequence[str | TransformationRef], instances: dict[str, TransformStep], where: str
) -> list[TransformStep]:
    """Transformer steps for ``refs``; one instance per name and config across rules."""
    steps: list[TransformStep] = []
    for ref in refs:
        name, cfg = (ref, {}) if isinstance(ref, str) else (ref.name, ref.config)
        key = f"{name}:{json.dumps(cfg, sort_keys=True, default=str)}"
        if key not in instances:
            try:
                instances[key] = TransformStep(key, name, create(name, cfg))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if instances[key] not in steps:
            steps.append(instances[key])
    return steps
