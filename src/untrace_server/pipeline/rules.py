"""``RulePipeline``: one customer's compiled routing, implementing ``Pipeline.process``.

For each trace: enrich → global sampling → match rules (priority order: higher
``priority`` first, equal priorities in document order; a matching rule with
``stopProcessing`` ends the evaluation) → per matched rule, its own sampling → routes.
No rule matched → ``defaultDestinations``. Rules matched but all sampled out → no route
(the default is for traces no rule claims). The document's top-level
``transformations`` run on every route, the defaults' included, before a rule's own:
redaction declared once reaches every destination.

When several matched rules name the same destination, it gets one route: the
transformations of all those rules in priority order (each distinct step once) and their
metadata (the higher-priority rule wins a key), so no rule's redaction is ever skipped.
A route's trace is built from its own copy: a redacting route never shares a mutable part
with a route that does not. A transformer that fails drops that route (fail closed) and
is counted in ``untrace_transform_failed_total``.

A RulePipeline is immutable once built: hot reload builds a new one
(``build_pipeline(..., previous=old)``) and swaps the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from untrace_server.model import Trace, from_builtins, to_builtins
from untrace_server.pipeline.base import Route
from untrace_server.pipeline.enrich import Enricher
from untrace_server.pipeline.metrics import SAMPLING_DROPPED, TRANSFORM_FAILED
from untrace_server.pipeline.sampling import SampleDecision, Sampler, TokenBucket
from untrace_server.pipeline.transformers.base import Transformer
from untrace_server.pipeline.transformers.fields import merge_metadata

__all__ = ["CompiledRule", "Decision", "RulePipeline", "TransformStep"]


@dataclass(frozen=True)
class TransformStep:
    key: str  # name + canonical config: the same step in two rules is applied once
    name: str
    transformer: Transformer


@dataclass(frozen=True)
class CompiledRule:
    id: str
    name: str
    priority: int
    destinations: tuple[str, ...]
    steps: tuple[TransformStep, ...] = ()
    metadata: dict[str, Any] | None = None
    sampler: Sampler | None = None
    stop: bool = False


@dataclass
class Decision:
    """Everything decided about one trace; ``process`` keeps only ``routes``."""

    trace: Trace  # enriched, before any transformation
    sampling: SampleDecision
    matched: list[CompiledRule] = field(default_factory=list)
    rule_sampling: dict[str, SampleDecision] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (destination, why)


class _Plan:
    __slots__ = ("meta_rules", "metadata", "rule_ids", "step_keys", "steps")

    def __init__(self) -> None:
        self.steps: list[TransformStep] = []
        self.step_keys: set[str] = set()
        self.metadata: dict[str, Any] = {}
        self.meta_rules: list[str] = []
        self.rule_ids: list[str] = []


class RulePipeline:
    def __init__(
        self,
        *,
        customer_id: str,
        version: str,
        rules: Sequence[CompiledRule],
        matcher: Callable[[Trace], list[int]],
        default_destinations: Sequence[str],
        sampler: Sampler | None,
        enricher: Enricher,
        buckets: dict[str, TokenBucket] | None = None,
        everywhere: Sequence[TransformStep] = (),
    ) -> None:
        self.customer_id = customer_id
        self.version = version
        self.rules = list(rules)
        self.matcher = matcher
        self.default_destinations = list(default_destinations)
        self.sampler = sampler
        self.enricher = enricher
        self.buckets = buckets or {}  # scope → bucket, handed to the next version on reload
        self.everywhere = tuple(everywhere)  # steps every route runs first
        self._dropped = {
            r: SAMPLING_DROPPED.labels(customer_id, r)
            for r in ("sample_rate", "rate_limit", "rule_sample_rate", "rule_rate_limit")
        }

    def process(self, trace: Trace) -> list[Route]:
        return self.decide(trace).routes

    def decide(self, trace: Trace, *, record: bool = True) -> Decision:
        """Decide where ``trace`` goes. ``record=False`` (dry runs) counts nothing and
        spends no rate-limit token."""
        trace = self.enricher.enrich(trace)
        if self.sampler is not None:
            sampling = self.sampler.decide(trace, consume=record)
            if not sampling.keep:
                if record:
                    self._dropped[sampling.reason].inc()
                return Decision(trace, sampling)
        else:
            sampling = SampleDecision(True, "kept")
        decision = Decision(trace, sampling)
        indexes = self.matcher(trace)
        if not indexes:
            if not self.default_destinations:
                return decision
            shared = self._apply(trace, self._plan(), record) if self.everywhere else trace
            for dest in self.default_destinations:
                if isinstance(shared, str):
                    decision.failures.append((dest, shared))
                else:
                    decision.routes.append(Route(destination_id=dest, trace=shared))
            return decision
        plans: dict[str, _Plan] = {}
        for i in indexes:
            rule = self.rules[i]
            decision.matched.append(rule)
            if rule.sampler is not None:
                verdict = rule.sampler.decide(trace, consume=record)
                decision.rule_sampling[rule.id] = verdict
                if not verdict.keep:
                    if record:
                        self._dropped[f"rule_{verdict.reason}"].inc()
                    continue
            for dest in rule.destinations:
                plan = plans.get(dest)
                if plan is None:
                    plan = plans[dest] = self._plan()
                plan.rule_ids.append(rule.id)
                for step in rule.steps:
                    if step.key not in plan.step_keys:
                        plan.step_keys.add(step.key)
                        plan.steps.append(step)
                if rule.metadata:
                    plan.meta_rules.append(rule.id)
                    for k, v in rule.metadata.items():
                        plan.metadata.setdefault(k, v)
        built: dict[tuple[Any, ...], Trace | str] = {}
        for dest, plan in plans.items():
            key = (tuple(s.key for s in plan.steps), tuple(plan.meta_rules))
            result = built.get(key)
            if result is None:
                result = built[key] = self._apply(trace, plan, record)
            if isinstance(result, str):
                decision.failures.append((dest, result))
                continue
            decision.routes.append(Route(destination_id=dest, trace=result, rule_ids=plan.rule_ids))
        return decision

    def _plan(self) -> _Plan:
        """A route's plan, starting with the steps every route runs."""
        plan = _Plan()
        for step in self.everywhere:
            plan.step_keys.add(step.key)
            plan.steps.append(step)
        return plan

    def _apply(self, trace: Trace, plan: _Plan, record: bool) -> Trace | str:
        """The trace as this plan delivers it, or the reason it cannot be built."""
        if not plan.steps:
            if not plan.metadata:
                return trace
            holder = {"metadata": dict(trace.metadata)}
            merge_metadata(holder, plan.metadata)
            return msgspec.structs.replace(trace, metadata=holder["metadata"])
        data = to_builtins(trace)
        name = "schema"
        try:
            for step in plan.steps:
                name = step.name
                data = step.transformer.transform(data)
            name = "schema"
            if plan.metadata:
                merge_metadata(data, plan.metadata)
            return from_builtins(data)
        except Exception as exc:  # never crash after startup: drop this route, count it
            if record:
                TRANSFORM_FAILED.labels(self.customer_id, name).inc()
            return f"transformer {name!r} failed: {type(exc).__name__}: {exc}"
