"""A tiny OpenAI-compatible upstream: ``POST /v1/chat/completions`` answers a fixed
completion echoing the last user message — a tool call instead when the request offers
tools and has no tool result yet, and SSE chunks when it asks for ``stream``. Records
requests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.sink import QuietHTTPServer

MODEL = "gpt-4o-mini-2024-07-18"
TOOL_CALL = {
    "id": "call_mock_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


def _message(request: dict[str, Any]) -> tuple[dict[str, Any], str]:
    last = request["messages"][-1]
    if request.get("tools") and last.get("role") != "tool":
        return {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}, "tool_calls"
    return {"role": "assistant", "content": f"echo: {last['content']}"}, "stop"


def completion(request: dict[str, Any]) -> dict[str, Any]:
    message, finish = _message(request)
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
        "usage": USAGE,
    }


def chunks(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The same answer as ``completion`` as stream chunks: role, two content pieces,
    finish, then (with ``stream_options.include_usage``) a usage-only chunk."""
    message, finish = _message(request)
    text = message["content"] or ""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": text[: len(text) // 2]}, {"content": text[len(text) // 2 :]}]
    base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": MODEL}
    out = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if (request.get("stream_options") or {}).get("include_usage"):
        out.append({**base, "choices": [], "usage": USAGE})
    return out


class MockOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                mock.requests.append(body)
                if body.get("stream"):
                    out = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks(body))
                    out += b"data: [DONE]\n\n"
                    media = "text/event-stream"
                else:
                    out = json.dumps(completion(body)).encode()
                    media = "application/json"
                self.send_response(200)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
