"""Local HTTP servers for the SDK tests: a recording trace collector (standing in for
the Untrace ingest endpoint) and a mock LLM upstream speaking the OpenAI chat
completions and Responses APIs and the Anthropic messages API (plain and SSE
streaming)."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@dataclass
class Reply:
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Collector:
    """Records every ``POST /api/v1/traces``; answers from ``script`` (one Reply per
    request, in order), then with ``default``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[Reply] = []
        self.default = Reply()
        self.lock = threading.Lock()
        collector = self

        class Handler(_Handler):
            def do_POST(self) -> None:
                raw_encoding = self.headers.get("Content-Encoding")
                body = json.loads(self._body())
                with collector.lock:
                    reply = collector.script.pop(0) if collector.script else collector.default
                    collector.requests.append(
                        {
                            "path": self.path,
                            "auth": self.headers.get("Authorization"),
                            "encoding": raw_encoding,
                            "traces": body.get("traces", [body]),
                            "time": time.monotonic(),
                            "status": reply.status,
                        }
                    )
                if reply.delay:
                    time.sleep(reply.delay)
                n = len(body.get("traces", [body]))
                self._reply(reply.status, {"accepted": n}, reply.headers)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def accepted(self) -> list[dict[str, Any]]:
        with self.lock:
            return [t for r in self.requests if r["status"] < 300 for t in r["traces"]]

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.accepted()
            if len(got) >= n:
                return got
            time.sleep(0.01)
        return self.accepted()


# -- mock LLM upstream ----------------------------------------------------------------

COMPLETION_TEXT = "Hello from the mock"
TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
STREAM_PARTS = ["Hel", "lo ", "from ", "the ", "stream"]


# the answer to a request for structured output (response_format / text.format)
STRUCTURED = '{"city":"Paris","temperature":21}'


def _json_schema(req: dict[str, Any]) -> bool:
    fmt = req.get("response_format") or (req.get("text") or {}).get("format") or {}
    return fmt.get("type") == "json_schema"


def _openai_completion(req: dict[str, Any]) -> dict[str, Any]:
    content = STRUCTURED if _json_schema(req) else COMPLETION_TEXT
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish = "stop"
    if req.get("tools"):
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        }
        finish = "tool_calls"
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": req["model"] + "-0613",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": 7,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 3},
        },
    }


def _openai_chunks(req: dict[str, Any]) -> Iterator[dict[str, Any]]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1}
    model = req["model"] + "-0613"
    if req.get("tools"):
        deltas: list[dict[str, Any]] = [
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            },
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        ]
        finish = "tool_calls"
    else:
        deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in STREAM_PARTS]
        finish = "stop"
    # like the real API: with include_usage every chunk carries "usage": null, and a
    # last chunk with no choices carries the usage; without it there is no usage at all
    with_usage = bool((req.get("stream_options") or {}).get("include_usage"))
    if with_usage:
        base["usage"] = None
    for d in deltas:
        yield {**base, "model": model, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
    yield {**base, "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    if with_usage:
        yield {
            **base,
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        }


def _responses_output(req: dict[str, Any]) -> list[dict[str, Any]]:
    answer = STRUCTURED if _json_schema(req) else COMPLETION_TEXT
    text = {"type": "output_text", "text": answer, "annotations": []}
    output: list[dict[str, Any]] = [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [text],
        }
    ]
    if req.get("tools"):
        output.append(
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
                "status": "completed",
            }
        )
    return output


def _responses_response(
    req: dict[str, Any], status: str, output: list[dict[str, Any]], usage: bool
) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": req["model"] + "-0613",
        "status": status,
        "output": output,
        "usage": {
            "input_tokens": 11,
            "input_tokens_details": {"cached_tokens": 3},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 18,
        }
        if usage
        else None,
        "error": None,
        "incomplete_details": None,
        "instructions": req.get("instructions"),
        "metadata": {},
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": req.get("tools") or [],
        "temperature": req.get("temperature"),
        "top_p": None,
    }


def _responses_events(req: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    seq = iter(range(1000))

    def ev(kind: str, **data: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **data}

    final = _responses_output(req)
    yield ev("response.created", response=_responses_response(req, "in_progress", [], False))
    message = {**final[0], "status": "in_progress", "content": []}
    yield ev("response.output_item.added", output_index=0, item=message)
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    yield ev("response.content_part.added", **where, part=part)
    for delta in STREAM_PARTS:
        yield ev("response.output_text.delta", **where, delta=delta, logprobs=[])
    text = "".join(STREAM_PARTS)
    yield ev("response.output_text.done", **where, text=text, logprobs=[])
    part = {"type": "output_text", "text": text, "annotations": []}
    yield ev("response.content_part.done", **where, part=part)
    final[0]["content"] = [part]
    yield ev("response.output_item.done", output_index=0, item=final[0])
    if req.get("tools"):
        call = {**final[1], "arguments": "", "status": "in_progress"}
        yield ev("response.output_item.added", output_index=1, item=call)
        for delta in ('{"city":', '"Paris"}'):
            kind = "response.function_call_arguments.delta"
            yield ev(kind, item_id="fc_1", output_index=1, delta=delta)
        yield ev(
            "response.function_call_arguments.done",
            item_id="fc_1",
            output_index=1,
            name="get_weather",
            arguments='{"city":"Paris"}',
        )
        yield ev("response.output_item.done", output_index=1, item=final[1])
    yield ev("response.completed", response=_responses_response(req, "completed", final, True))


def _anthropic_message(req: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": COMPLETION_TEXT}]
    stop = "end_turn"
    if req.get("tools"):
        content.append(
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
        )
        stop = "tool_use"
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": req["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6, "cache_read_input_tokens": 4},
    }


def _anthropic_events(req: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": req["model"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        },
    )
    yield (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for part in STREAM_PARTS:
        yield (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": part},
            },
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    stop = "end_turn"
    if req.get("tools"):
        stop = "tool_use"
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {},
                },
            },
        )
        for part in ('{"city":', ' "Paris"}'):
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                },
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": 1}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 9},
        },
    )
    yield "message_stop", {"type": "message_stop"}


class MockLLM:
    """OpenAI ``/v1/chat/completions`` and ``/v1/responses``, Anthropic ``/v1/messages``.
    A model name starting with ``error`` answers 400; one starting with ``strict`` answers
    400 to a request with ``stream_options`` (a server without that option);
    ``chunk_delay`` slows every SSE event."""

    def __init__(self, chunk_delay: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.chunk_delay = chunk_delay
        mock = self

        class Handler(_Handler):
            def do_POST(self) -> None:
                req = json.loads(self._body())
                mock.requests.append(req)
                if str(req.get("model", "")).startswith("error"):
                    self._reply(
                        400, {"error": {"message": "bad model", "type": "invalid"}, "type": "error"}
                    )
                    return
                if str(req.get("model", "")).startswith("strict") and "stream_options" in req:
                    message = "Unrecognized request argument supplied: stream_options"
                    self._reply(400, {"error": {"message": message, "type": "invalid"}})
                    return
                if self.path.endswith("/chat/completions"):
                    if req.get("stream"):
                        self._sse((None, c) for c in _openai_chunks(req))
                    else:
                        self._reply(200, _openai_completion(req))
                elif self.path.endswith("/responses"):
                    if req.get("stream"):
                        self._sse(_responses_events(req))
                    else:
                        output = _responses_output(req)
                        self._reply(200, _responses_response(req, "completed", output, True))
                elif self.path.endswith("/messages"):
                    if req.get("stream"):
                        self._sse(_anthropic_events(req))
                    else:
                        self._reply(200, _anthropic_message(req))
                else:
                    self._reply(404, {"error": {"message": "no route"}})

            def _sse(self, events: Any) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for name, data in events:
                    text = (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
                    self._chunk(text.encode())
                    if mock.chunk_delay:
                        time.sleep(mock.chunk_delay)
                if self.path.endswith("/chat/completions"):
                    self._chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2)


class SlowProxy:
    """Forwards each request to ``target`` after sleeping ``delay`` seconds: a slow
    Untrace server, built in front of a real one."""

    def __init__(self, target: str, delay: float) -> None:
        import httpx

        self.delay = delay
        self.forwarded = 0
        proxy = self
        client = httpx.Client(base_url=target, timeout=30)

        class Handler(_Handler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(proxy.delay)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type", "content-encoding")
                }
                upstream = client.post(self.path, content=body, headers=headers)
                proxy.forwarded += 1
                data = upstream.content
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._client = client

    def close(self) -> None:
        self._client.close()


class Clients:
    """Real openai / anthropic SDK clients pointed at a MockLLM; the ``sdk`` fixture
    closes them all at teardown."""

    def __init__(self, mock: MockLLM) -> None:
        self.mock = mock
        self.made: list[Any] = []

    def _keep(self, client: Any) -> Any:
        self.made.append(client)
        return client

    def oai(self) -> Any:
        import openai

        return self._keep(
            openai.OpenAI(api_key="sk-test", base_url=self.mock.url + "/v1", max_retries=0)
        )

    def aoai(self) -> Any:
        import openai

        return self._keep(
            openai.AsyncOpenAI(api_key="sk-test", base_url=self.mock.url + "/v1", max_retries=0)
        )

    def claude(self) -> Any:
        import anthropic

        return self._keep(
            anthropic.Anthropic(api_key="sk-ant", base_url=self.mock.url, max_retries=0)
        )

    def aclaude(self) -> Any:
        import anthropic

        return self._keep(
            anthropic.AsyncAnthropic(api_key="sk-ant", base_url=self.mock.url, max_retries=0)
        )
