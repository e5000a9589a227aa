"""The routing document (DESIGN §7), as pydantic models, and ``build_pipeline``.

In the config file it sits under ``customers.<name>.routing``::

    version: "3"
    defaultDestinations: [langfuse-main]
    samplingConfig: {rate: 0.5, key: trace, alwaysKeep: {errors: true}}
    rules:
      - id: prod-to-datadog
        name: Production traffic to Datadog, redacted
        enabled: true
        priority: 100               # higher first; equal priorities keep file order
        conditions:
          all:
            - {field: $.metadata.environment, operator: eq, value: production}
            - not: {field: $.metadata.tags.team, operator: in, value: [qa, load-test]}
        actions:
          destinations: [datadog-prod]
          transformations: [pii_redaction, {name: truncate, config: {maxChars: 4000}}]
          sampling: {rate: 0.1}
          metadata: {routedBy: untrace}
          stopProcessing: false

``RoutingConfig.model_validate`` checks the shape; ``build_pipeline`` also checks what
needs context (destination ids, transformer names and configs, regexes, JSONPaths) and
compiles everything once. Every problem is one ``ConfigError`` line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from untrace_server.errors import ConfigError

__all__ = [
    "AlwaysKeepConfig",
    "Condition",
    "ConditionGroup",
    "RoutingConfig",
    "RoutingRule",
    "RuleActions",
    "SamplingConfig",
    "TransformationRef",
    "build_pipeline",
    "format_validation_error",
]

Operator = Literal["eq", "neq", "gt", "lt", "gte", "lte", "contains", "regex", "in", "exists"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Condition(_Model):
    field: str
    operator: Operator
    value: Any = None


def _node_kind(v: Any) -> str:
    if isinstance(v, dict):
        return "leaf" if "field" in v else "group"
    return "leaf" if isinstance(v, Condition) else "group"


ConditionNode = Annotated[
    Annotated[Condition, Tag("leaf")] | Annotated["ConditionGroup", Tag("group")],
    Discriminator(_node_kind),
]


class ConditionGroup(_Model):
    all: list[ConditionNode] | None = None
    any: list[ConditionNode] | None = None
    not_: ConditionNode | None = Field(default=None, alias="not")


ConditionGroup.model_rebuild()


class AlwaysKeepConfig(_Model):
    """Traces kept whatever the rate or the rate limit says."""

    errors: bool = False
    latency_above_ms: float | None = Field(default=None, alias="latencyAboveMs", ge=0)
    conditions: ConditionNode | None = None


class SamplingConfig(_Model):
    """``rate``: the fraction kept, decided from a hash of the root trace id (or of the
    session id with ``key: session``) so every node and redelivery agrees.
    ``rateLimit``: at most this many traces per second (token bucket of ``burst``)."""

    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    key: Literal["trace", "session"] = "trace"
    rate_limit: float | None = Field(default=None, alias="rateLimit", gt=0)
    burst: int | None = Field(default=None, ge=1)
    always_keep: AlwaysKeepConfig | None = Field(default=None, alias="alwaysKeep")


class TransformationRef(_Model):
    name: str
    config: dict[str, Any] = Field(default_factory=dict)


class RuleActions(_Model):
    destinations: list[str] = Field(default_factory=list)
    transformations: list[str | TransformationRef] = Field(default_factory=list)
    sampling: SamplingConfig | None = None
    metadata: dict[str, Any] | None = None
    stop_processing: bool = Field(default=False, alias="stopProcessing")


class RoutingRule(_Model):
    id: str = Field(min_length=1, max_length=128)
    name: str = ""
    description: str | None = None
    enabled: bool = True
    priority: int = 0
    conditions: ConditionNode = Field(default_factory=ConditionGroup)
    actions: RuleActions


class RoutingConfig(_Model):
    version: str = "1"
    rules: list[RoutingRule] = Field(default_factory=list)
    default_destinations: list[str] = Field(default_factory=list, alias="defaultDestinations")
    sampling_config: SamplingConfig | None = Field(default=None, alias="samplingConfig")
    # applied to every route — default destinations included — before the rules' own
    transformations: list[str | TransformationRef] = Field(default_factory=list)

    @pydantic.field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @pydantic.model_validator(mode="after")
    def _unique_ids(self) -> RoutingConfig:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears twice")
            seen.add(rule.id)
        return self


def format_validation_error(exc: pydantic.ValidationError, prefix: str = "routing") -> str:
    """One readable line from a pydantic error: ``routing: rules[0].actions: ...``."""
    problems = []
    for err in exc.errors()[:5]:
        loc = ""
        for part in err["loc"]:
            if part in ("leaf", "group"):
                continue
            loc += f"[{part}]" if isinstance(part, int) else f".{part}" if loc else str(part)
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(exc.errors()) - 5} more)" if len(exc.errors()) > 5 else ""
    return f"{prefix}: " + "; ".join(problems) + more


def parse_routing(routing: dict[str, Any] | RoutingConfig, customer_id: str) -> RoutingConfig:
    if isinstance(routing, RoutingConfig):
        return routing
    try:
        return RoutingConfig.model_validate(routing)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"routing of {customer_id!r}")) from None


def build_pipeline(
    routing: dict[str, Any] | RoutingConfig,
    *,
    customer_id: str,
    known_destinations: set[str],
    pricing_overrides: dict[str, Any] | None = None,
    previous: Any = None,
) -> Any:
    """Validate and compile a customer's routing document into a ``RulePipeline``.

    Raises ConfigError (one line) on anything wrong. ``previous`` (the RulePipeline this
    one replaces on a hot reload) hands over the rate-limit buckets, so a reload does
    not refill them."""
    from untrace_server.pipeline.compile import compile_pipeline

    config = parse_routing(routing, customer_id)
    return compile_pipeline(
        config,
        customer_id=customer_id,
        known_destinations=known_destinations,
        pricing_overrides=pricing_overrides,
        previous=previous,
    )
