"""One contract suite over every connector in ``destinations/``: lifecycle, config
validation, HTTP status → retryable/permanent through the shared classifier, batch
splitting (count, 413 halves), and deterministic ids (a redelivery sends the same bytes).

Every connector is pointed at one local HTTP server that answers what a test tells it
and records what it received."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pydantic
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from untrace_server.destinations.base import BatchResult, Destination, DestinationContext
from untrace_server.destinations.datadog import DatadogDestination
from untrace_server.destinations.helicone import HeliconeDestination
from untrace_server.destinations.langfuse import LangfuseDestination
from untrace_server.destinations.langsmith import LangsmithDestination
from untrace_server.destinations.otlp import OtlpDestination
from untrace_server.destinations.s3 import S3Destination
from untrace_server.errors import PartialDeliveryError, PermanentError, RetryableError
from untrace_server.model import Message, Trace, Usage, now_ms
from untrace_server.model import Request as TraceRequest
from untrace_server.model import Response as TraceResponse

CONTEXT = DestinationContext(destination_id="dest-1", customer_id="cust-1")
START = now_ms() - 60_000


@dataclass
class Recorder:
    """What the fake platform answers (a queue of statuses, then ``default``) and saw."""

    default: int = 200
    queue: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    # a body holding this answers 413 whatever the order: one-per-request
    # connectors send concurrently, so "the second request" is not "the second trace"
    too_large_marker: bytes | None = None

    async def app(self, request: Request) -> Response:
        body = await request.body()
        if "gzip" in request.headers.get("content-encoding", ""):
            with contextlib.suppress(OSError, EOFError):  # S3 may frame it aws-chunked
                body = gzip.decompress(body)
        self.paths.append(request.url.path)
        self.bodies.append(body)
        if self.too_large_marker is not None and self.too_large_marker in body:
            status, headers = 413, {}
        else:
            status, headers = self.queue.pop(0) if self.queue else (self.default, {})
        content = b'{"errors": []}' if status == 207 else b"{}" if status < 300 else b"nope"
        if request.method == "PUT" and status < 300:
            content = b""  # S3 PutObject answers an empty 200
        return Response(content, status_code=status, headers=headers)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    app = Starlette(
        routes=[Route("/{path:path}", recorder.app, methods=["GET", "POST", "PUT", "HEAD"])]
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            loop="asyncio",
            http="h11",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", recorder
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def platform(fake: tuple[str, Recorder]) -> tuple[str, Recorder]:
    url, recorder = fake
    recorder.default, recorder.queue[:], recorder.bodies[:], recorder.paths[:] = 200, [], [], []
    recorder.too_large_marker = None
    return url, recorder


# type name → (class, valid config builder given the fake's URL, invalid configs → message)
CONNECTORS: dict[str, tuple[type[Any], Any, list[tuple[dict[str, Any], str]]]] = {
    "otlp": (
        OtlpDestination,
        lambda u: {"endpoint": u, "max_batch_count": 2},
        [
            ({}, "endpoint is required"),
            ({"endpoint": "not a url"}, "URL"),
            ({"preset": "mlflow", "endpoint": "http://x"}, "experiment_id is required"),
            ({"preset": "phoenix", "encoding": "json"}, "protobuf only"),
            ({"preset": "weave", "api_key": "k", "project": "p"}, "entity/project"),
        ],
    ),
    "langsmith": (
        LangsmithDestination,
        lambda u: {"api_key": "ls-key", "endpoint": u, "max_batch_count": 2},
        [
            ({}, "api_key"),
            ({"api_key": "k", "region": "mars"}, "'us', 'eu', 'apac' or 'aws'"),
            ({"api_key": "k", "endpoint": "ftp//x"}, "URL"),
        ],
    ),
    "langfuse": (
        LangfuseDestination,
        lambda u: {"public_key": "pk-1", "secret_key": "sk-1", "endpoint": u, "max_batch_count": 2},
        [
            ({"secret_key": "s"}, "public_key"),
            ({"public_key": "p", "secret_key": "s", "region": "moon"}, "'eu', 'us', 'jp' or"),
        ],
    ),
    "langfuse_legacy": (
        LangfuseDestination,
        lambda u: {
            "public_key": "pk-1",
            "secret_key": "sk-1",
            "endpoint": u,
            "api": "legacy",
            "max_batch_count": 2,
        },
        [
            ({"public_key": "p", "secret_key": "s", "api": "v2"}, "'otel' or 'legacy'"),
        ],
    ),
    "helicone": (
        HeliconeDestination,
        lambda u: {"api_key": "h-key", "endpoint": u},
        [
            ({}, "api_key"),
            ({"api_key": "k", "endpoint": "helicone"}, "URL"),
        ],
    ),
    "datadog": (
        DatadogDestination,
        lambda u: {"api_key": "dd", "ml_app": "shop-bot", "endpoint": u, "max_batch_count": 2},
        [
            ({"api_key": "k"}, "ml_app"),
            ({"api_key": "k", "ml_app": "Shop Bot"}, "lowercase"),
            ({"api_key": "k", "ml_app": "a", "site": "ddog-gov.com"}, "datadoghq.eu"),
        ],
    ),
    "s3": (
        S3Destination,
        lambda u: {
            "bucket": "traces",
            "endpoint_url": u,
            "path_style": True,
            "max_batch_count": 2,
            "access_key_id": "AKIA",
            "secret_access_key": "secret",
        },
        [
            ({}, "bucket"),
            ({"bucket": "Bad_Bucket"}, "pattern"),
            ({"bucket": "ok-bucket", "access_key_id": "a"}, "go together"),
        ],
    ),
}
NAMES = sorted(CONNECTORS)
# Connectors that send one trace per request, whatever the batch size.
ONE_PER_REQUEST = {"helicone"}


def make(name: str, url: str, **overrides: Any) -> Destination:
    cls, build, _ = CONNECTORS[name]
    config = cls.Config.model_validate({**build(url), **overrides})
    destination: Destination = cls(config, CONTEXT)
    return destination


def sample(n: int, prefix: str = "t") -> list[Trace]:
    start = START
    return [
        Trace(
            id=f"{prefix}-{i}",
            parent_id=f"{prefix}-0" if i else None,
            session_id="s-1",
            start_time=start + i,
            end_time=start + i + 500,
            provider="openai",
            model="gpt-4o-mini",
            request=TraceRequest(messages=[Message(role="user", content=f"hello {i}")]),
            response=TraceResponse(
                content="hi", usage=Usage(prompt_tokens=3, completion_tokens=1, total_tokens=4)
            ),
            metadata={"customerId": "cust-1", "tags": {"team": "a"}},
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("name", NAMES)
async def test_lifecycle_shutdown_without_start_and_twice(name: str) -> None:
    destination = make(name, "http://127.0.0.1:9")
    assert isinstance(destination, Destination)
    await destination.shutdown()
    await destination.shutdown()
    await destination.start()
    await destination.start()
    await destination.shutdown()
    await destination.shutdown()


@pytest.mark.parametrize("name", NAMES)
async def test_send_before_start_is_retryable_not_a_crash(name: str) -> None:
    with pytest.raises(RetryableError, match="not started"):
        await make(name, "http://127.0.0.1:9").send_batch(sample(1))


@pytest.mark.parametrize("name", NAMES)
def test_config_validation_fails_fast_with_a_clear_message(name: str) -> None:
    cls, build, bad = CONNECTORS[name]
    cls.Config.model_validate(build("http://127.0.0.1:1"))
    for config, message in bad:
        with pytest.raises(pydantic.ValidationError) as info:
            cls.Config.model_validate(config)
        assert message in str(info.value), (config, str(info.value))
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        cls.Config.model_validate({**build("http://127.0.0.1:1"), "unknown_key": 1})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [
        (429, RetryableError, 7.0),
        (503, RetryableError, None),
        (500, RetryableError, None),
        (400, PermanentError, None),
        (401, PermanentError, None),
        (403, PermanentError, None),
    ],
)
async def test_status_classified_by_the_shared_classifier(
    name: str,
    status: int,
    error: type[Exception],
    retry_after: float | None,
    platform: tuple[str, Recorder],
) -> None:
    url, recorder = platform
    recorder.default = status
    headers = {"retry-after": "7"} if retry_after else {}
    recorder.queue[:] = [(status, headers)] * 10
    destination = make(name, url)
    await destination.start()
    try:
        with pytest.raises(error) as info:
            await destination.send_batch(sample(1))
        if retry_after is not None:
            assert info.value.retry_after == retry_after  # type: ignore[attr-defined]
        assert str(status) in str(info.value)
    finally:
        await destination.shutdown()


@pytest.mark.parametrize("name", NAMES)
async def test_unreachable_platform_is_retryable(name: str) -> None:
    destination = make(name, "http://127.0.0.1:9", timeout_s=2)
    await destination.start()
    try:
        with pytest.raises(RetryableError):
            await destination.send_batch(sample(1))
        assert not (await destination.health_check()).healthy
    finally:
        await destination.shutdown()


@pytest.mark.parametrize("name", NAMES)
async def test_batches_split_by_count(name: str, platform: tuple[str, Recorder]) -> None:
    url, recorder = platform
    destination = make(name, url)
    await destination.start()
    try:
        result = await destination.send_batch(sample(5))
    finally:
        await destination.shutdown()
    assert result == BatchResult(delivered=5)
    assert len(recorder.bodies) == (5 if name in ONE_PER_REQUEST else 3)  # max_batch_count 2


@pytest.mark.parametrize("name", sorted(set(NAMES) - ONE_PER_REQUEST))
async def test_413_splits_and_retries_the_halves(name: str, platform: tuple[str, Recorder]) -> None:
    url, recorder = platform
    recorder.queue[:] = [(413, {})]
    destination = make(name, url, max_batch_count=4)
    await destination.start()
    try:
        result = await destination.send_batch(sample(4))
    finally:
        await destination.shutdown()
    assert result.delivered == 4
    assert len(recorder.bodies) == 3  # the whole batch (413), then two halves
    assert len(recorder.bodies[1]) < len(recorder.bodies[0])


@pytest.mark.parametrize("name", NAMES)
async def test_a_single_trace_too_large_fails_alone(
    name: str, platform: tuple[str, Recorder]
) -> None:
    url, recorder = platform
    recorder.too_large_marker = b"hello 1"  # the content of trace 1 only
    destination = make(name, url, max_batch_count=1)
    await destination.start()
    try:
        with pytest.raises(PartialDeliveryError) as info:
            await destination.send_batch(sample(3))
    finally:
        await destination.shutdown()
    assert list(info.value.failed) == [1]
    assert isinstance(info.value.failed[1], PermanentError)


@pytest.mark.parametrize("name", NAMES)
async def test_ids_are_deterministic_so_redelivery_is_an_upsert(
    name: str, platform: tuple[str, Recorder]
) -> None:
    url, recorder = platform
    rounds: list[list[bytes]] = []
    destination = make(name, url, **({} if name in ONE_PER_REQUEST else {"max_batch_count": 10}))
    await destination.start()
    try:
        for prefix in ("t", "t", "other"):
            await destination.send_batch(sample(3, prefix=prefix))
            rounds.append(sorted(recorder.bodies))
            recorder.bodies.clear()
    finally:
        await destination.shutdown()
    first, again, other = rounds
    assert first == again, "a redelivery must carry the same ids and bytes"
    assert first != other


# --- OTel ids kept end to end (OTLP family) -------------------------------------------

OTEL_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def otel_span_traces() -> tuple[Trace, Trace, Trace]:
    """Spans of one OTel trace as the OTLP receivers make them: 16-hex ids and
    ``metadata.otelTraceId``; only the root knows ``rootId``; the grandchild's parent is
    in no batch sent here."""

    def span(sid: str, parent: str | None, **meta: Any) -> Trace:
        return Trace(
            id=sid,
            parent_id=parent,
            start_time=START,
            end_time=START + 10,
            model="gpt-4o-mini",
            metadata={"otelTraceId": OTEL_TRACE, **meta},
        )

    return (
        span("00f067aa0ba902b7", None, rootId="00f067aa0ba902b7"),
        span("a3ce929d0e0e4736", "00f067aa0ba902b7"),
        span("53995c3f42cd8ad8", "1111111111111111"),
    )


@pytest.mark.parametrize("name", ["otlp", "langfuse"])
async def test_otlp_family_keeps_the_otel_trace_and_span_ids(
    name: str, platform: tuple[str, Recorder]
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    url, recorder = platform
    root, child, grandchild = otel_span_traces()
    destination = make(name, url)
    await destination.start()
    try:  # each span in its own delivery, the children first
        for batch in ([grandchild], [child], [root]):
            assert (await destination.send_batch(batch)).delivered == 1
    finally:
        await destination.shutdown()
    spans = {}
    for body in recorder.bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                spans.update({s.span_id.hex(): s for s in ss.spans})
    assert set(spans) == {root.id, child.id, grandchild.id}
    assert {s.trace_id.hex() for s in spans.values()} == {OTEL_TRACE}
    assert spans[child.id].parent_span_id.hex() == root.id
    assert spans[grandchild.id].parent_span_id.hex() == "1111111111111111"
    assert not spans[root.id].parent_span_id


@pytest.mark.parametrize(
    "value", ["", "4bf92f35", "0" * 32, "zz" * 16, OTEL_TRACE + "00", 42, None]
)
def test_an_invalid_otel_trace_id_falls_back_to_the_derived_one(value: Any) -> None:
    from untrace_server.destinations._ids import lineage, trace_id

    root, child, _ = otel_span_traces()
    root.metadata["otelTraceId"] = child.metadata["otelTraceId"] = value
    tree = lineage([root, child])
    assert tree.trace_id(child) == tree.trace_id(root) == trace_id(root.id)


def test_otel_trace_id_is_inherited_from_an_ancestor_in_the_batch() -> None:
    from untrace_server.destinations._ids import lineage

    root, child, _ = otel_span_traces()
    del child.metadata["otelTraceId"]
    assert lineage([root, child]).trace_id(child) == bytes.fromhex(OTEL_TRACE)


# --- MLflow preset -----------------------------------------------------------------------


async def test_mlflow_preset_headers_json_and_span_attributes(
    platform: tuple[str, Recorder],
) -> None:
    import json

    url, recorder = platform
    destination = make(
        "otlp",
        url,
        preset="mlflow",
        experiment_id="7",
        encoding="json",
        compression="none",
        max_batch_count=10,
    )
    assert destination.config.attribute_flavour() == "mlflow"  # type: ignore[attr-defined]
    headers = destination.client_headers()  # type: ignore[attr-defined]
    assert headers["x-mlflow-experiment-id"] == "7"
    assert headers["content-type"] == "application/json"
    kinds = ["llm", "chain", "tool", "retrieval", "embedding", "agent"]
    traces = [
        Trace(
            id=f"k-{kind}",
            kind=kind,
            start_time=START,
            end_time=START + 5,
            request=TraceRequest(prompt="question?"),
            response=TraceResponse(content="answer"),
        )
        for kind in kinds
    ]
    await destination.start()
    try:
        assert (await destination.send_batch(traces)).delivered == len(traces)
    finally:
        await destination.shutdown()
    [body] = recorder.bodies
    spans = json.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    attrs = {
        s["name"]: {a["key"]: next(iter(a["value"].values())) for a in s["attributes"]}
        for s in spans
    }
    types = {name: a["mlflow.spanType"] for name, a in attrs.items()}
    assert types == {
        "text_completion": "LLM",
        "invoke_workflow": "CHAIN",
        "execute_tool": "TOOL",
        "retrieval": "RETRIEVER",
        "embeddings": "EMBEDDING",
        "invoke_agent": "AGENT",
    }
    for a in attrs.values():
        assert a["mlflow.spanInputs"] == "question?"
        assert a["mlflow.spanOutputs"] == "answer"
        assert "gen_ai.operation.name" in a


def test_mlflow_attributes_leave_chat_spans_to_mlflow_and_tool_results_use_response() -> None:
    from untrace_server.destinations._otlp_attrs import mlflow_attributes

    trace = Trace(
        id="chat-1",
        start_time=START,
        end_time=START + 5,
        model="gpt-4o-mini",
        request=TraceRequest(
            messages=[
                Message(role="user", content="weather?"),
                Message(role="tool", content="sunny", tool_call_id="call-1"),
            ]
        ),
        response=TraceResponse(content="It is sunny."),
    )
    attrs = mlflow_attributes(trace)
    assert attrs["mlflow.spanType"] == "CHAT_MODEL"
    assert "mlflow.spanInputs" not in attrs and "mlflow.spanOutputs" not in attrs
    assert '"type":"tool_call_response","id":"call-1","response":"sunny"' in (
        attrs["gen_ai.input.messages"].replace(" ", "")
    )
