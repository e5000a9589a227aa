from __future__ import annotations

import pytest

from untrace_server.errors import ConfigError
from untrace_server.model import to_builtins
from untrace_server.pipeline.paths import Many, locate, parse, resolve


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$.metadata.tags.team", "search"),
        ("$['metadata']['environment']", "production"),
        ("$.request.messages[0].content", "You are helpful."),
        ("$.request.messages[-1].role", "user"),
        ("$.request.messages[5].role", None),
        ("$.response.usage.total_tokens", 1200),
        ("$.startTime", 1_700_000_000_000),
        ("$.start_time", 1_700_000_000_000),
        ("$.metadata.missing.deeper", None),
        ("$.error.message", None),
        ("$.kind", "llm"),
    ],
)
def test_resolve_on_struct_and_dict(make_trace, text, expected):
    trace = make_trace()
    path = parse(text)
    assert resolve(trace, path.steps) == expected
    if text != "$.kind":  # the wire form omits defaults
        assert resolve(to_builtins(trace), path.steps) == expected


def test_wildcards_collect_every_value(make_trace):
    trace = make_trace()
    roles = resolve(trace, parse("$.request.messages[*].role").steps)
    assert isinstance(roles, Many) and roles == ["system", "user"]
    tags = resolve(trace, parse("$.metadata.tags.*").steps)
    assert tags == ["search"]
    assert resolve(make_trace(request={}), parse("$.request.messages[*].role").steps) == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("metadata.env", "must start with '$'"),
        ("$", "whole trace"),
        ("$.request.mesages", "no field 'mesages'"),
        ("$.request.messages.role", "on a list"),
        ("$.metadata[0]", "on an object"),
        ("$.metadata..x", "cannot read"),
    ],
)
def test_bad_paths_are_refused_with_a_reason(text, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("$", r"\$")):
        parse(text)


def test_locate_designates_containers_for_writing(make_trace):
    data = to_builtins(make_trace())
    found = list(locate(data, parse("$.request.messages[*].content").steps))
    assert [parent[key] for parent, key in found] == [
        "You are helpful.",
        "Hello, my email is ann@example.com",
    ]
    assert list(locate(data, parse("$.metadata.nothing").steps)) == []
