"""The whole path against a real Arize Phoenix: traces POSTed to a running Untrace
server reach Phoenix through the ``otlp`` destination (``phoenix`` preset) with model,
token counts, input/output and the parent/child link intact."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.integration.destinations.test_phoenix import fetch_spans
from tests.support.server import ServerProcess, make_trace


def test_traces_posted_to_untrace_appear_in_phoenix(
    phoenix_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    config: dict[str, Any] = {
        "customers": {
            "default": {
                "destinations": [
                    {
                        "id": "phoenix",
                        "type": "otlp",
                        "config": {
                            "preset": "phoenix",
                            "endpoint": phoenix_url,
                            "project": "through-untrace",
                        },
                    }
                ],
                "routing": {"defaultDestinations": ["phoenix"]},
            }
        },
        "delivery": {"max_wait_s": 0.05},
    }
    server = server_factory(config).start()
    root = make_trace(
        1,
        id="srv-root",
        kind="chain",
        name="answer-question",
        model=None,
        provider=None,
        sessionId="sess-9",
    )
    child = make_trace(
        2,
        id="srv-child",
        parentId="srv-root",
        sessionId="sess-9",
        response={
            "content": "Paris.",
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 21, "completion_tokens": 2, "total_tokens": 23},
        },
        request={"messages": [{"role": "user", "content": "Capital of France?"}]},
    )
    response = server.post_traces([root, child])
    assert response.status_code == 202, response.text

    spans = {s["name"]: s for s in asyncio.run(fetch_spans(phoenix_url, "through-untrace", 2))}
    parent = spans["answer-question"]
    llm = next(s for name, s in spans.items() if name != "answer-question")
    assert llm["parent_id"] == parent["context"]["span_id"]
    assert llm["context"]["trace_id"] == parent["context"]["trace_id"]
    attrs = llm["attributes"]
    assert attrs["llm.model_name"] == "gpt-4o-mini"
    assert attrs["llm.token_count.prompt"] == 21
    assert attrs["llm.token_count.completion"] == 2
    assert "Capital of France?" in attrs["input.value"]
    assert attrs["output.value"] == "Paris."
    assert attrs["session.id"] == "sess-9"
