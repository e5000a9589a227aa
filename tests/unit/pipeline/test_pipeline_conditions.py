"""The condition compiler: a rule-by-trace table over every operator and nesting, and a
property test against a straightforward reference interpretation."""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from untrace_server.errors import ConfigError
from untrace_server.model import from_builtins
from untrace_server.pipeline.conditions import compile_condition, compile_matcher
from untrace_server.pipeline.regexsafe import compile_safe

from .conftest import trace_dict


def leaf(field: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


ENV = "$.metadata.environment"
TOKENS = "$.response.usage.total_tokens"
ROLES = "$.request.messages[*].role"

TABLE = [
    (leaf(ENV, "eq", "production"), True),
    (leaf(ENV, "eq", "staging"), False),
    (leaf(ENV, "neq", "staging"), True),
    (leaf("$.metadata.nothing", "neq", "x"), True),
    (leaf(TOKENS, "eq", 1200), True),
    (leaf(TOKENS, "eq", 1200.0), True),
    (leaf(TOKENS, "eq", "1200"), False),
    (leaf(TOKENS, "gt", 1000), True),
    (leaf(TOKENS, "gt", 1200), False),
    (leaf(TOKENS, "gte", 1200), True),
    (leaf(TOKENS, "lt", 1200.5), True),
    (leaf(TOKENS, "lte", 1199), False),
    (leaf(ENV, "gt", 3), False),  # a string is not a number
    (leaf("$.request.messages[1].content", "contains", "email"), True),
    (leaf("$.request.messages[1].content", "contains", "phone"), False),
    (leaf("$.metadata.tags", "contains", "team"), True),
    (leaf("$.metadata.list", "contains", 2), True),
    (leaf("$.metadata.list", "contains", True), False),  # true is not 1
    (leaf("$.model", "regex", r"^gpt-4o(-mini)?$"), True),
    (leaf("$.model", "regex", r"^claude"), False),
    (leaf(TOKENS, "regex", r"\d+"), False),  # regex only reads strings
    (leaf("$.metadata.tags.team", "in", ["search", "ads"]), True),
    (leaf("$.metadata.tags.team", "in", ["ads"]), False),
    (leaf(TOKENS, "in", [1, 1200]), True),
    (leaf("$.metadata.flag", "in", [1]), False),  # flag is true, not 1
    (leaf("$.error", "exists"), False),
    (leaf("$.error", "exists", False), True),
    (leaf("$.response.usage", "exists", True), True),
    (leaf(ROLES, "eq", "user"), True),
    (leaf(ROLES, "eq", "tool"), False),
    (leaf(ROLES, "neq", "user"), True),  # the system message is not 'user'
    (leaf(ROLES, "in", ["tool", "system"]), True),
    (leaf("$.response.messages[*].role", "exists"), False),  # no elements
    ({}, True),
    ({"all": []}, True),
    ({"any": []}, False),
    ({"all": [leaf(ENV, "eq", "production"), leaf(TOKENS, "gt", 5000)]}, False),
    ({"any": [leaf(ENV, "eq", "staging"), leaf(TOKENS, "gt", 5000)]}, False),
    ({"any": [leaf(ENV, "eq", "staging"), leaf(TOKENS, "gt", 500)]}, True),
    ({"not": leaf(ENV, "eq", "production")}, False),
    ({"not": {"any": [leaf(ENV, "eq", "dev"), leaf("$.error", "exists")]}}, True),
    (
        {
            "all": [leaf(ENV, "eq", "production")],
            "any": [leaf("$.metadata.tags.team", "eq", "x"), leaf("$.model", "regex", "mini")],
            "not": leaf(TOKENS, "lt", 100),
        },
        True,
    ),
    ({"all": [{"any": [{"not": {"all": [leaf(ENV, "eq", "production")]}}]}]}, False),
]


@pytest.mark.parametrize(("tree", "expected"), TABLE)
def test_condition_table(tree, expected):
    metadata = {**trace_dict()["metadata"], "list": [1, 2, 3], "flag": True}
    trace = from_builtins(trace_dict(metadata=metadata))
    assert compile_condition(tree)(trace) is expected


def test_matcher_keeps_order_and_stops():
    trees = [
        (leaf(ENV, "eq", "production"), False, "a"),
        (leaf(TOKENS, "gt", 10), True, "b"),
        (leaf(ENV, "exists"), False, "c"),
    ]
    match = compile_matcher(trees)
    assert match(from_builtins(trace_dict())) == [0, 1]
    small = trace_dict(response={"usage": {"total_tokens": 1}})
    assert match(from_builtins(small)) == [0, 2]


@pytest.mark.parametrize(
    ("tree", "fragment"),
    [
        (leaf(TOKENS, "gt", "10"), "needs a number"),
        (leaf(ENV, "in", "production"), "needs a list"),
        (leaf(ENV, "regex", "(unclosed"), "invalid regex"),
        (leaf(ENV, "regex", "(a+)+$"), "backtrack"),
        (leaf(ENV, "exists", "yes"), "true or false"),
        (leaf(ENV, "like", "x"), "unknown operator"),
        (leaf("$.request.mesages", "exists"), "no field 'mesages'"),
        ({"every": []}, "unknown key 'every'"),
    ],
)
def test_bad_conditions_are_refused(tree, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        compile_condition(tree, "rule 'r'")


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a|ab)*c", r"(\w+\s?)*$", r"(x*)*y", r"(a)\1"])
def test_catastrophic_regexes_are_refused(pattern):
    with pytest.raises(ConfigError):
        compile_safe(pattern)


@pytest.mark.parametrize(
    "pattern", [r"^prod-\d+$", r"(foo|bar)+", r"(\d{1,3}\.){3}\d{1,3}", r"(?>a+)+b", r"(?i)error"]
)
def test_ordinary_regexes_are_accepted_and_fast(pattern):
    compiled = compile_safe(pattern)
    start = time.perf_counter()
    compiled.search("a" * 16_384 + "!")
    assert time.perf_counter() - start < 0.5


# --- property test against a reference interpretation -----------------------------

FIELDS = {
    "$.metadata.environment": ["metadata", "environment"],
    "$.metadata.score": ["metadata", "score"],
    "$.metadata.tags.team": ["metadata", "tags", "team"],
    "$.response.usage.total_tokens": ["response", "usage", "total_tokens"],
    "$.metrics.latency_ms": ["metrics", "latency_ms"],
    "$.model": ["model"],
    "$.kind": ["kind"],
    "$.request.messages[0].content": ["request", "messages", 0, "content"],
    "$.request.messages[*].role": ["request", "messages", "*", "role"],
}
SCALARS = st.sampled_from(["prod", "dev", "a", "", "llm", 0, 1, 1.0, 2.5, -3, True, False, None])


def full_dict(obj: Any) -> Any:
    """The trace as plain data *with* defaults (the wire form omits them)."""
    if isinstance(obj, msgspec.Struct):
        return {f.encode_name: full_dict(getattr(obj, f.name)) for f in msgspec.structs.fields(obj)}
    if isinstance(obj, list):
        return [full_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: full_dict(v) for k, v in obj.items()}
    return obj


def ref_get(data: Any, tokens: list[Any]) -> list[Any] | Any:
    for i, tok in enumerate(tokens):
        if tok == "*":
            items = data if isinstance(data, list) else []
            return [ref_get(item, tokens[i + 1 :]) for item in items]
        if isinstance(tok, int):
            data = data[tok] if isinstance(data, list) and len(data) > tok else None
        else:
            data = data.get(tok) if isinstance(data, dict) else None
    return data


def ref_eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(ref_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return set(a) == set(b) and all(ref_eq(a[k], b[k]) for k in a)
    return a == b


def ref_op(op: str, x: Any, v: Any) -> bool:
    is_num = isinstance(x, int | float) and not isinstance(x, bool)
    if op == "eq":
        return ref_eq(x, v)
    if op == "neq":
        return not ref_eq(x, v)
    if op in ("gt", "lt", "gte", "lte"):
        if not is_num:
            return False
        return {"gt": x > v, "lt": x < v, "gte": x >= v, "lte": x <= v}[op]
    if op == "contains":
        if isinstance(x, str):
            return isinstance(v, str) and v in x
        if isinstance(x, list):
            return any(ref_eq(i, v) for i in x)
        if isinstance(x, dict):
            return isinstance(v, str) and v in x
        return False
    if op == "regex":
        return isinstance(x, str) and re.search(v, x) is not None
    if op == "in":
        return any(ref_eq(x, i) for i in v)
    assert op == "exists"
    return (x is not None) if v in (None, True) else (x is None)


def ref_eval(node: dict[str, Any], data: dict[str, Any]) -> bool:
    if "field" in node:
        tokens = FIELDS[node["field"]]
        got = ref_get(data, tokens)
        if "*" in tokens:
            return any(ref_op(node["operator"], x, node["value"]) for x in got)
        return ref_op(node["operator"], got, node["value"])
    result = True
    if "all" in node:
        result = result and all(ref_eval(n, data) for n in node["all"])
    if "any" in node:
        result = result and any(ref_eval(n, data) for n in node["any"])
    if "not" in node:
        result = result and not ref_eval(node["not"], data)
    return result


numbers = st.sampled_from([0, 1, 1.0, 2.5, -3, 1200])
leaves = st.one_of(
    st.builds(leaf, st.sampled_from(list(FIELDS)), st.sampled_from(["eq", "neq"]), SCALARS),
    st.builds(
        leaf, st.sampled_from(list(FIELDS)), st.sampled_from(["gt", "lt", "gte", "lte"]), numbers
    ),
    st.builds(
        leaf, st.sampled_from(list(FIELDS)), st.just("contains"), st.sampled_from(["a", "o", "pro"])
    ),
    st.builds(
        leaf,
        st.sampled_from(list(FIELDS)),
        st.just("regex"),
        st.sampled_from(["^p", "v$", "l+", "[0-9]"]),
    ),
    st.builds(leaf, st.sampled_from(list(FIELDS)), st.just("in"), st.lists(SCALARS, max_size=3)),
    st.builds(
        leaf, st.sampled_from(list(FIELDS)), st.just("exists"), st.sampled_from([None, True, False])
    ),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
        st.builds(lambda a, b: {"all": a, "not": b}, st.lists(inner, max_size=2), inner),
    ),
    max_leaves=8,
)
roles = st.lists(st.sampled_from(["user", "system", "tool", "assistant"]), max_size=3)
traces = st.builds(
    lambda env, score, team, tokens, latency, model, kind, first, rs: from_builtins(
        {
            "id": "t",
            "startTime": 0,
            "endTime": 10,
            "model": model,
            "kind": kind,
            "request": {
                "messages": [
                    {"role": r, "content": first if i == 0 else "x"} for i, r in enumerate(rs)
                ]
            },
            "response": {"usage": {"total_tokens": tokens}} if tokens is not None else {},
            "metadata": {
                k: v
                for k, v in {"environment": env, "score": score, "tags": {"team": team}}.items()
                if v is not None
            },
            "metrics": {"latency_ms": latency} if latency is not None else {},
        }
    ),
    st.sampled_from(["prod", "dev", "a", None]),
    SCALARS,
    st.sampled_from(["prod", "pro", "v"]),
    st.one_of(st.none(), st.sampled_from([0, 1, 1200, -3])),
    st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.5])),
    st.sampled_from(["gpt-4o", "llama", "prov"]),
    st.sampled_from(["llm", "tool"]),
    st.sampled_from(["prod", "a1", "", "pro"]),
    roles,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, trace=traces)
def test_compiled_conditions_agree_with_reference(tree, trace):
    expected = ref_eval(tree, full_dict(trace))
    assert compile_condition(tree)(trace) is expected
