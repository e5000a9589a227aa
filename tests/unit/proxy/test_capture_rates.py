"""Tokens per second from a proxied call's timing: over the generation window (first
token to end) for a real stream, over the whole latency when there is no first token or
the rest arrived in one burst."""

from __future__ import annotations

import pytest

from untrace_server.proxy.capture.base import Exchange, tokens_per_second
from untrace_server.proxy.headers import TraceHeaders


def exchange(t_end: float) -> Exchange:
    e = Exchange("openai", "chat/completions", "c", TraceHeaders(), b"{}", 0, t0=100.0)
    e.t_end = t_end
    return e


@pytest.mark.parametrize(
    ("first_at", "t_end", "expected"),
    [
        (100.5, 101.5, 60.0),  # 60 tokens generated over 1 s after a 0.5 s first token
        (None, 102.0, 30.0),  # not streamed: over the latency
        (101.999, 102.0, 30.0),  # everything after the first token in 1 ms: a burst
    ],
)
def test_tokens_per_second(first_at: float | None, t_end: float, expected: float) -> None:
    assert tokens_per_second(exchange(t_end), 60, first_at) == pytest.approx(expected)


def test_no_tokens_no_rate() -> None:
    assert tokens_per_second(exchange(101.0), 0, 100.5) is None
