"""Cutting an oversized trace to fit the per-trace limit (ingest/fit.py), and the native
receiver's choice between cutting and refusing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from untrace_server import model
from untrace_server.config import IngestConfig
from untrace_server.errors import PayloadTooLarge
from untrace_server.ingest.fit import MIN_KEPT_CHARS, fit
from untrace_server.ingest.native import parse_traces


def trace(**kw: object) -> model.Trace:
    data = {"id": "t-1", "startTime": 1, "endTime": 2, "model": "gpt-4o", **kw}
    return model.from_builtins(data)


def test_a_trace_within_the_limit_is_returned_as_is() -> None:
    t = trace(response={"content": "x" * 1000})
    assert fit(t, 10_000) is t


def test_the_longest_strings_are_cut_first_and_listed() -> None:
    t = trace(
        request={"prompt": "p" * 20_000, "parameters": {"user": "u" * 300}},
        response={"content": "c" * 5_000},
        metadata={"customerId": "c" * 600, "note": "short"},
    )
    fitted = fit(t, 12_000)
    assert fitted is not None and len(model.encode(fitted)) <= 12_000
    assert fitted.request.prompt is not None and fitted.request.prompt.startswith("ppp")
    assert fitted.request.prompt.endswith(" chars]")
    assert fitted.response.content == "c" * 5_000  # short enough once the prompt is cut
    assert fitted.metadata["customerId"] == "c" * 600  # never cut
    assert fitted.metadata["truncatedFields"] == ["request.prompt"]
    assert t.request.prompt == "p" * 20_000  # the original is left alone


def test_no_fit_when_the_bulk_is_not_text() -> None:
    t = trace(request={"parameters": {"embedding": [0.5] * 5_000}})
    assert fit(t, 10_000) is None
    many_short = trace(metadata={f"k{i}": "v" * (MIN_KEPT_CHARS - 1) for i in range(100)})
    assert fit(many_short, 10_000) is None  # nothing is long enough to cut


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(min_size=0, max_size=3_000), min_size=1, max_size=20),
    st.integers(min_value=2_000, max_value=40_000),
)
def test_whatever_fits_is_within_the_limit(texts: list[str], limit: int) -> None:
    t = trace(
        request={"messages": [{"role": "user", "content": text} for text in texts]},
        response={"content": "".join(texts)},
    )
    fitted = fit(t, limit)
    if fitted is None:
        return
    assert len(model.encode(fitted)) <= limit
    if fitted is not t:
        cut = fitted.metadata["truncatedFields"]
        assert cut and all(p.startswith(("request.", "response.")) for p in cut)


def test_native_ingest_cuts_or_refuses_as_configured() -> None:
    body = json.dumps(
        {"id": "t-1", "startTime": 1, "endTime": 2, "response": {"content": "x" * 9_000}}
    )
    [cut] = parse_traces(body.encode(), IngestConfig(max_trace_bytes=5_000))
    assert cut.metadata["truncatedFields"] == ["response.content"]
    with pytest.raises(PayloadTooLarge) as info:
        parse_traces(body.encode(), IngestConfig(max_trace_bytes=5_000, oversized_traces="reject"))
    assert info.value.details == [{"index": 0, "field": "$", "problem": "trace exceeds 5000 bytes"}]
