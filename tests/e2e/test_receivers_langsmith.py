"""LangSmith open runs: a post and its patch in different requests are merged into one
trace, survive ``kill -9`` in between, and an unpatched run is forwarded as partial."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from langsmith import Client
from tests.conftest import webhook_config
from tests.support.server import ServerProcess, wait_until
from tests.support.sink import WebhookSink


def _server(
    server_factory: Callable[..., ServerProcess], sink: WebhookSink, **receivers: Any
) -> ServerProcess:
    config = webhook_config(("hook", sink))
    config["receivers"] = {"langsmith_sweep_interval_s": 0.2, **receivers}
    return server_factory(config).start()


def _client(server: ServerProcess) -> Client:
    return Client(api_url=server.url + "/langsmith", api_key=server.key, auto_batch_tracing=False)


def _delivered(sink: WebhookSink, run_id: str) -> list[dict[str, Any]]:
    return [t for d in sink.deliveries for t in d.traces if t["id"] == run_id]


def test_post_and_patch_merge_across_a_kill9(
    server_factory: Callable[..., ServerProcess], sink_factory: Callable[..., WebhookSink]
) -> None:
    sink = sink_factory()
    server = _server(server_factory, sink)
    run_id = uuid.uuid4()
    start = datetime.now(UTC) - timedelta(seconds=2)
    ls = _client(server)
    ls.create_run(
        name="plan",
        run_type="chain",
        inputs={"question": "why?"},
        id=run_id,
        start_time=start,
        project_name="p",
        extra={"metadata": {"thread_id": "th-1"}},
    )
    server.kill9()
    assert _delivered(sink, str(run_id)) == []
    server.start()
    ls.update_run(
        run_id, end_time=start + timedelta(milliseconds=1500), outputs={"output": "because"}
    )
    assert wait_until(lambda: _delivered(sink, str(run_id)), 10), server.log()
    (trace,) = _delivered(sink, str(run_id))
    assert trace["name"] == "plan" and trace["kind"] == "chain"
    assert trace["request"]["prompt"] == "why?"
    assert trace["response"]["content"] == "because"
    assert trace["sessionId"] == "th-1"
    assert trace["endTime"] - trace["startTime"] == 1500
    assert "partial" not in trace["metadata"]
    ls.session.close()


def test_unpatched_run_is_forwarded_as_partial(
    server_factory: Callable[..., ServerProcess], sink_factory: Callable[..., WebhookSink]
) -> None:
    sink = sink_factory()
    server = _server(server_factory, sink, langsmith_open_run_timeout_s=1)
    run_id = uuid.uuid4()
    ls = _client(server)
    ls.create_run(
        name="never-ends",
        run_type="llm",
        id=run_id,
        project_name="p",
        inputs={"messages": [{"role": "user", "content": "hello"}]},
        extra={"metadata": {"ls_provider": "openai", "ls_model_name": "gpt-4o"}},
    )
    assert wait_until(lambda: _delivered(sink, str(run_id)), 10), server.log()
    (trace,) = _delivered(sink, str(run_id))
    assert trace["metadata"]["partial"] is True
    assert trace["model"] == "gpt-4o" and trace["provider"] == "openai"
    assert trace["request"]["messages"] == [{"role": "user", "content": "hello"}]
    ls.session.close()
