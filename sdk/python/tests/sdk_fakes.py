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

from sdk_llm_payloads import (  # noqa: F401 - re-exported for the tests
    COMPLETION_TEXT,
    STREAM_PARTS,
    STRUCTURED,
    TOOLS_OPENAI,
    _anthropic_events,
    _anthropic_message,
    _json_schema,
    _openai_chunks,
    _openai_completion,
    _responses_events,
    _responses_output,
    _responses_response,
)


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
