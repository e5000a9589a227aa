from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from untrace_server.model import Trace, from_builtins


def trace_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "trace-1",
        "startTime": 1_700_000_000_000,
        "endTime": 1_700_000_001_500,
        "model": "gpt-4o-mini",
        "request": {
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "Hello, my email is ann@example.com"},
            ],
            "parameters": {"temperature": 0.2},
        },
        "response": {
            "content": "Hi Ann!",
            "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200},
            "finish_reason": "stop",
        },
        "metadata": {
            "customerId": "acme",
            "applicationId": "app-1",
            "environment": "production",
            "version": "1.4.2",
            "tags": {"team": "search"},
        },
    }
    data.update(overrides)
    return data


@pytest.fixture
def make_trace() -> Callable[..., Trace]:
    def make(**overrides: Any) -> Trace:
        return from_builtins(trace_dict(**overrides))

    return make
