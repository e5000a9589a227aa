from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from untrace_server.errors import ConfigError
from untrace_server.model import to_builtins
from untrace_server.pipeline.config import RoutingConfig, build_pipeline
from untrace_server.pipeline.dryrun import explain

DESTS = {"langfuse", "datadog", "s3", "webhook"}


def rule(rid: str, conditions: Any, dests: list[str], **actions: Any) -> dict[str, Any]:
    extra = {k: actions.pop(k) for k in ("priority", "enabled") if k in actions}
    return {
        "id": rid,
        "name": rid,
        "conditions": conditions,
        "actions": {"destinations": dests, **actions},
        **extra,
    }


def build(rules: list[dict[str, Any]], **kw: Any):
    routing = {"version": 7, "rules": rules, "defaultDestinations": ["s3"], **kw}
    return build_pipeline(routing, customer_id="acme", known_destinations=DESTS)


PROD = {"field": "$.metadata.environment", "operator": "eq", "value": "production"}
BIG = {"field": "$.response.usage.total_tokens", "operator": "gt", "value": 100}


def by_dest(routes):
    return {r.destination_id: r for r in routes}


def test_every_matching_rule_routes_in_priority_order_and_default_otherwise(make_trace):
    p = build(
        [rule("low", BIG, ["webhook"], priority=1), rule("high", PROD, ["datadog"], priority=50)]
    )
    routes = p.process(make_trace())
    assert [(r.destination_id, r.rule_ids) for r in routes] == [
        ("datadog", ["high"]),
        ("webhook", ["low"]),
    ]
    dev = make_trace(metadata={"environment": "dev"}, response={})
    assert [(r.destination_id, r.rule_ids) for r in p.process(dev)] == [("s3", [])]


def test_stop_processing_and_disabled_rules(make_trace):
    p = build(
        [
            rule("first", PROD, ["datadog"], priority=10, stopProcessing=True),
            rule("never", PROD, ["webhook"], priority=5),
            rule("off", PROD, ["langfuse"], priority=99, enabled=False),
        ]
    )
    assert [r.destination_id for r in p.process(make_trace())] == ["datadog"]


def test_redaction_only_reaches_the_route_that_asks_for_it(make_trace):
    p = build(
        [
            rule(
                "red",
                PROD,
                ["datadog"],
                transformations=["pii_redaction"],
                metadata={"redacted": True},
            ),
            rule("raw", PROD, ["langfuse"]),
        ]
    )
    original = make_trace()
    routes = by_dest(p.process(original))
    red, raw = routes["datadog"].trace, routes["langfuse"].trace
    assert red.request.messages[1].content == "Hello, my email is [REDACTED:EMAIL]"
    assert red.metadata["redacted"] is True
    assert raw.request.messages[1].content == "Hello, my email is ann@example.com"
    assert "redacted" not in raw.metadata and "redacted" not in original.metadata
    assert original.request.messages[1].content.endswith("ann@example.com")
    assert red.request.messages is not raw.request.messages


def test_rules_sharing_a_destination_apply_all_their_transformations(make_trace):
    p = build(
        [
            rule("a", PROD, ["datadog"], priority=2, metadata={"by": "a"}),
            rule(
                "b",
                BIG,
                ["datadog"],
                priority=1,
                transformations=["pii_redaction"],
                metadata={"by": "b", "x": 1},
            ),
        ]
    )
    [route] = p.process(make_trace())
    assert route.rule_ids == ["a", "b"]
    assert "[REDACTED:EMAIL]" in route.trace.request.messages[1].content
    assert route.trace.metadata["by"] == "a" and route.trace.metadata["x"] == 1


def test_document_transformations_reach_every_route_defaults_included(make_trace):
    """Redaction declared once, at the top of the document, reaches every destination:
    the rules' routes (before their own steps, each step once) and the defaults."""
    p = build(
        [
            rule("plain", PROD, ["langfuse"]),
            rule(
                "also",
                PROD,
                ["datadog"],
                transformations=["pii_redaction", {"name": "truncate", "config": {"maxChars": 10}}],
            ),
        ],
        transformations=["pii_redaction"],
    )
    original = make_trace()
    routes = by_dest(p.process(original))
    assert set(routes) == {"langfuse", "datadog"}
    for route in routes.values():
        assert "ann@example.com" not in str(to_builtins(route.trace))
    assert routes["datadog"].trace.metadata["truncatedFields"]
    [default] = p.process(make_trace(metadata={"environment": "dev"}))
    assert default.destination_id == "s3"
    assert default.trace.request.messages[1].content == "Hello, my email is [REDACTED:EMAIL]"
    assert original.request.messages[1].content.endswith("ann@example.com")  # untouched
    with pytest.raises(ConfigError, match=r"transformations.*no_such"):
        build([], transformations=["no_such"])


def test_field_transformers_in_order(make_trace):
    steps = [
        {
            "name": "drop_fields",
            "config": {"fields": ["$.request.parameters", "$.request.messages[0]"]},
        },
        {"name": "truncate", "config": {"maxChars": 5}},
        {
            "name": "hash_fields",
            "config": {"fields": ["$.metadata.applicationId"], "key": "secret-key"},
        },
        {
            "name": "set_metadata",
            "config": {"values": {"pipeline": "v2", "tags": {"routed": "yes"}}},
        },
    ]
    p = build([rule("r", PROD, ["datadog"], transformations=steps)])
    out = p.process(make_trace())[0].trace
    assert out.request.parameters == {}
    assert [m.role for m in out.request.messages] == ["user"]
    assert out.request.messages[0].content == "Hello…[truncated 29 chars]"
    assert out.response.content == "Hi Ann!"[:5] + "…[truncated 2 chars]"
    assert "$.request.messages[*].content" in out.metadata["truncatedFields"]
    assert out.metadata["applicationId"].startswith("hmac-sha256:")
    assert out.metadata["tags"] == {"team": "search", "routed": "yes"}
    assert out.metadata["pipeline"] == "v2"


def test_per_rule_sampling_drops_only_that_rule(make_trace):
    p = build(
        [
            rule("sampled", PROD, ["datadog"], sampling={"rate": 0.0}),
            rule("all", PROD, ["langfuse"]),
        ]
    )
    assert [r.destination_id for r in p.process(make_trace())] == ["langfuse"]
    only = build([rule("sampled", PROD, ["datadog"], sampling={"rate": 0.0})])
    assert only.process(make_trace()) == []  # matched, sampled out: no default


def test_enrichment_fills_cost_latency_provider(make_trace):
    p = build([])
    [route] = p.process(make_trace(model="gpt-4o-mini-2024-07-18"))
    m = route.trace.metrics
    assert m.latency_ms == 1500.0
    assert m.estimated_cost == pytest.approx((1000 * 0.15 + 200 * 0.60) / 1e6)
    assert m.tokens_per_second == pytest.approx(200 / 1.5, rel=1e-3)
    assert route.trace.provider == "openai"


@pytest.mark.parametrize(
    ("model", "provider", "cost"),
    [
        ("claude-3-5-sonnet-20241022", "anthropic", (1000 * 3 + 200 * 15) / 1e6),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic", (1000 * 0.8 + 200 * 4) / 1e6),
        ("models/gemini-2.0-flash", "google", (1000 * 0.1 + 200 * 0.4) / 1e6),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "meta", (1200 * 0.88) / 1e6),
        ("deepseek-chat", "deepseek", (1000 * 0.27 + 200 * 1.1) / 1e6),
        ("gpt-4.5-preview", "openai", None),  # not 'gpt-4' by prefix
    ],
)
def test_pricing_lookup(make_trace, model, provider, cost):
    [route] = build([]).process(make_trace(model=model))
    assert route.trace.provider == provider
    if cost is None:
        assert route.trace.metrics.estimated_cost is None
    else:
        assert route.trace.metrics.estimated_cost == pytest.approx(cost)


def test_cached_tokens_and_overrides(make_trace):
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 0,
        "total_tokens": 1000,
        "cached_tokens": 400,
    }
    p = build_pipeline(
        {"defaultDestinations": ["s3"]},
        customer_id="acme",
        known_destinations=DESTS,
        pricing_overrides={"my-model": {"input": 1.0, "output": 2.0, "cachedInput": 0.5}},
    )
    [route] = p.process(make_trace(model="my-model", response={"usage": usage}))
    assert route.trace.metrics.estimated_cost == pytest.approx((600 * 1.0 + 400 * 0.5) / 1e6)


@pytest.mark.parametrize(
    ("routing", "fragment"),
    [
        ({"rules": [rule("r", PROD, ["nowhere"])]}, "rule 'r': unknown destination 'nowhere'"),
        ({"defaultDestinations": ["nope"]}, "defaultDestinations: unknown destination 'nope'"),
        (
            {"rules": [rule("r", PROD, ["s3"], transformations=["magic"])]},
            "unknown transformer 'magic'",
        ),
        (
            {
                "rules": [
                    rule("r", PROD, ["s3"], transformations=[{"name": "truncate", "config": {}}])
                ]
            },
            "transformer 'truncate': maxChars",
        ),
        (
            {"rules": [rule("r", {"field": "$.x", "operator": "eq", "value": 1}, ["s3"])]},
            "no field 'x'",
        ),
        (
            {
                "rules": [
                    rule("r", {"field": "$.model", "operator": "regex", "value": "(a*)*"}, ["s3"])
                ]
            },
            "backtrack",
        ),
        ({"rules": [rule("r", PROD, ["s3"]), rule("r", PROD, ["s3"])]}, "appears twice"),
        ({"rules": [{"id": "r", "actions": {"destinations": ["s3"]}, "colour": "red"}]}, "colour"),
        ({"rules": [rule("r", {"field": "$.model", "operator": "like"}, ["s3"])]}, "operator"),
        ({"samplingConfig": {"rate": 2}}, "samplingConfig.rate"),
    ],
)
def test_bad_config_is_one_readable_line(routing, fragment):
    with pytest.raises(ConfigError) as info:
        build_pipeline(routing, customer_id="acme", known_destinations=DESTS)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_model_round_trips_camel_case():
    doc = {
        "version": "3",
        "defaultDestinations": ["s3"],
        "samplingConfig": {"rate": 0.5, "rateLimit": 10, "alwaysKeep": {"latencyAboveMs": 100}},
        "rules": [
            rule("r", {"not": PROD}, ["s3"], stopProcessing=True, transformations=["truncate"])
        ],
    }
    config = RoutingConfig.model_validate(doc)
    assert config.rules[0].actions.stop_processing and config.rules[0].conditions.not_ is not None
    dumped = config.model_dump(by_alias=True, exclude_none=True)
    assert dumped["samplingConfig"]["alwaysKeep"] == {"errors": False, "latencyAboveMs": 100}


def test_hot_reload_keeps_rate_limit_buckets():
    routing = {"defaultDestinations": ["s3"], "samplingConfig": {"rateLimit": 5}}
    first = build_pipeline(routing, customer_id="acme", known_destinations=DESTS)
    second = build_pipeline(routing, customer_id="acme", known_destinations=DESTS, previous=first)
    assert second.buckets["global"] is first.buckets["global"]


def test_third_party_transformer_through_entry_points(monkeypatch, make_trace):
    from importlib.metadata import EntryPoint

    from untrace_server.pipeline.transformers import base

    monkeypatch.setattr(
        base,
        "entry_points",
        lambda group: [EntryPoint("shout", f"{__name__}:ShoutTransformer", base.GROUP)],
    )
    base._entry_points.cache_clear()
    try:
        assert "shout" in base.available()
        p = build([rule("r", PROD, ["datadog"], transformations=["shout"])])
        assert p.process(make_trace())[0].trace.response.content == "HI ANN!"
    finally:
        base._entry_points.cache_clear()


class ShoutTransformer:
    class Config(BaseModel):
        pass

    def __init__(self, config: Any) -> None:
        pass

    def transform(self, data: dict[str, Any]) -> dict[str, Any]:
        data["response"]["content"] = data["response"]["content"].upper()
        return data


def test_failing_transformer_drops_only_its_route(monkeypatch, make_trace):
    p = build(
        [
            rule("bad", PROD, ["datadog"], transformations=["pii_redaction"]),
            rule("ok", PROD, ["langfuse"]),
        ]
    )
    step = p.rules[0].steps[0]
    monkeypatch.setattr(step.transformer, "transform", lambda data: 1 / 0)
    decision = p.decide(make_trace())
    assert [r.destination_id for r in decision.routes] == ["langfuse"]
    assert decision.failures[0][0] == "datadog" and "ZeroDivisionError" in decision.failures[0][1]


def test_explain_reports_without_side_effects(make_trace):
    p = build(
        [rule("red", PROD, ["datadog"], transformations=["pii_redaction"])],
        samplingConfig={"rateLimit": 1, "burst": 1},
    )
    report = explain(p, make_trace())
    report = explain(p, make_trace())  # no token spent by the first dry run
    assert report.sampling == {"keep": True, "reason": "kept"}
    assert [r["id"] for r in report.matched_rules] == ["red"]
    [route] = report.routes
    assert route.destination_id == "datadog" and route.transformations == ["pii_redaction"]
    assert '-        "content": "Hello, my email is ann@example.com",' in route.diff
    assert '+        "content": "Hello, my email is [REDACTED:EMAIL]",' in route.diff
    text = report.to_text()
    assert "red (red)" in text and "→ datadog" in text
    assert report.to_dict()["routes"][0]["destinationId"] == "datadog"
    dev = explain(p, make_trace(metadata={"environment": "dev"}))
    assert dev.default_used and dev.routes[0].diff == ""
    assert to_builtins(dev.routes[0].trace) == to_builtins(
        p.decide(make_trace(metadata={"environment": "dev"})).trace
    )
