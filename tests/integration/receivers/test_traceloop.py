"""The real traceloop-sdk (OpenLLMetry) instrumenting the openai SDK, exporting OTLP to
Untrace: ``traceloop_app.py`` runs in its own cached venv (traceloop_env.sh; the SDK pulls
dozens of instrumentation packages that stay out of the project's venv) and calls the
mock upstream plainly, streamed and with a tool call, inside ``@workflow``/``@task``."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.integration.receivers.conftest import Recorder
from tests.integration.receivers.mock_openai import MODEL, MockOpenAI
from tests.support.tools import cached_tool

HERE = Path(__file__).resolve().parent
USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


@pytest.fixture(scope="session")
def traceloop_python() -> str:
    return cached_tool(HERE / "traceloop_env.sh", "traceloop-sdk", timeout_s=900)


def run_app(python: str, recorder: Recorder, upstream: str, session: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}
    env["TRACELOOP_METRICS_ENABLED"] = "false"  # Untrace takes traces, not metrics
    done = subprocess.run(
        [python, str(HERE / "traceloop_app.py"), recorder.url, recorder.key, upstream, session],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trace_id: str = json.loads(done.stdout.strip().splitlines()[-1])["trace_id"]
    return trace_id


def test_traceloop_workflow_of_openai_calls(
    traceloop_python: str, recorder: Recorder, mock_openai: MockOpenAI
) -> None:
    session = str(uuid.uuid4())
    trace_id = run_app(traceloop_python, recorder, mock_openai.base_url, session)
    # workflow + 3 tasks + 4 chat calls (plain, streamed, tool call and its follow-up)
    traces = recorder.wait_for(lambda t: t["metadata"].get("otelTraceId") == trace_id, 8)
    named: dict[str, list[dict[str, Any]]] = {}
    for t in traces:
        named.setdefault(t["name"], []).append(t)
    [workflow] = named["assistant.workflow"]
    tasks = {n: t for n in ("ask", "ask_streaming", "use_tool") for t in named[f"{n}.task"]}
    chats = named["openai.chat"]
    assert len(traces) == 8 and len(chats) == 4

    # the tree: workflow → tasks → chat spans, every span of the same session
    assert "parentId" not in workflow and workflow["kind"] == "chain"
    assert all(t["parentId"] == workflow["id"] and t["kind"] == "chain" for t in tasks.values())
    by_task = {name: [c for c in chats if c["parentId"] == t["id"]] for name, t in tasks.items()}
    assert [len(by_task[n]) for n in ("ask", "ask_streaming", "use_tool")] == [1, 1, 2]
    assert {t["sessionId"] for t in traces} == {session}
    assert all(t["metadata"]["applicationId"] == "traceloop-app" for t in traces)

    # the task spans carry traceloop.entity.input/output as content
    assert tasks["ask"]["request"]["prompt"] == '{"args": ["ping"], "kwargs": {}}'
    assert tasks["ask"]["response"]["content"] == '"echo: ping"'

    for chat in chats:
        assert chat.get("kind", "llm") == "llm" and chat["provider"] == "openai"
        assert chat["model"] == MODEL
        assert chat["response"]["usage"] == USAGE

    [plain] = by_task["ask"]
    assert plain["request"]["messages"] == [{"role": "user", "content": "ping"}]
    assert plain["request"]["parameters"] == {"max_tokens": 20, "temperature": 0.3}
    assert plain["response"]["messages"] == [{"role": "assistant", "content": "echo: ping"}]
    assert plain["response"]["finish_reason"] == "stop"

    [streamed] = by_task["ask_streaming"]
    assert streamed["request"]["messages"] == [{"role": "user", "content": "stream me"}]
    assert streamed["response"]["messages"] == [{"role": "assistant", "content": "echo: stream me"}]

    call, follow_up = sorted(by_task["use_tool"], key=lambda c: c["startTime"])
    tool_call = {
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        "id": "call_mock_1",
    }
    assert call["response"]["messages"] == [{"role": "assistant", "tool_calls": [tool_call]}]
    assert follow_up["request"]["messages"] == [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "tool_calls": [tool_call]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_mock_1"},
    ]
    assert follow_up["response"]["messages"] == [{"role": "assistant", "content": "echo: sunny"}]
