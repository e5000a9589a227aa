"""The langsmith SDK pointed at ``/langsmith`` with an Untrace key: ``@traceable`` trees,
``wrap_openai`` against a mock upstream, both ingest paths (multipart and batch)."""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import httpx
import openai
import pytest
from langsmith import Client, traceable, tracing_context

with warnings.catch_warnings():  # the package __init__ imports a deprecated shim
    warnings.simplefilter("ignore", DeprecationWarning)
    from langsmith.wrappers import wrap_openai

from tests.integration.receivers.conftest import Recorder
from tests.integration.receivers.mock_openai import MODEL, MockOpenAI


def client(recorder: Recorder, **kw: Any) -> Client:
    return Client(api_url=recorder.url + "/langsmith", api_key=recorder.key, **kw)


@pytest.mark.parametrize("multipart", [True, False], ids=["multipart", "batch"])
def test_traceable_tree_with_wrapped_openai(
    recorder: Recorder, mock_openai: MockOpenAI, multipart: bool
) -> None:
    info = httpx.get(recorder.url + "/langsmith/info").json()
    info["batch_ingest_config"]["use_multipart_endpoint"] = multipart
    ls = client(recorder, info=info)
    raw = openai.OpenAI(api_key="sk-test", base_url=mock_openai.base_url)
    oai = wrap_openai(raw)
    marker = str(uuid.uuid4())

    @traceable(run_type="tool", name="lookup")
    def lookup(q: str) -> str:
        return q.upper()

    @traceable(name="answer", metadata={"marker": marker, "session_id": f"sess-{marker}"})
    def answer(question: str) -> str:
        fact = lookup(question)
        reply = oai.chat.completions.create(
            model="gpt-4o-mini",
            temperature=0.1,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": fact},
            ],
        )
        return reply.choices[0].message.content or ""

    with tracing_context(client=ls, enabled=True, project_name="receiver-test"):
        assert answer("hi there") == "echo: HI THERE"
    ls.flush()
    raw.close()
    ls.session.close()
    traces = recorder.wait_for(
        lambda t: (
            t["metadata"].get("marker") == marker
            or t["metadata"].get("rootId") in _roots(recorder, marker)
        ),
        3,
    )
    by_name = {t["name"]: t for t in traces}
    root, tool, llm = by_name["answer"], by_name["lookup"], by_name["ChatOpenAI"]
    assert root["kind"] == "chain" and "parentId" not in root
    assert root["metadata"]["rootId"] == root["id"]
    assert root["sessionId"] == f"sess-{marker}"
    assert root["request"]["prompt"] == "hi there"
    assert root["response"]["content"] == "echo: HI THERE"
    assert tool["kind"] == "tool" and tool["parentId"] == root["id"]
    assert llm["parentId"] == root["id"] and llm.get("kind", "llm") == "llm"
    assert llm["provider"] == "openai" and llm["model"] == "gpt-4o-mini"
    assert llm["request"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "HI THERE"},
    ]
    assert llm["request"]["parameters"]["temperature"] == 0.1
    assert llm["response"]["messages"][0]["content"] == "echo: HI THERE"
    assert llm["response"]["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 4,
        "total_tokens": 13,
    }
    assert llm["response"]["finish_reason"] == "stop"
    assert all(t["metadata"]["langsmithProject"] == "receiver-test" for t in traces)
    assert not any(t["metadata"].get("partial") for t in traces)
    assert MODEL  # the upstream answered with its dated model name


def _roots(recorder: Recorder, marker: str) -> set[str]:
    return {t["id"] for t in recorder.traces() if t["metadata"].get("marker") == marker}
