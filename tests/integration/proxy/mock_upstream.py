"""A local upstream that speaks enough of the OpenAI and Anthropic APIs for the proxy
tests: chat completions (plain, tools, streaming with and without include_usage),
completions, embeddings, responses, models, Anthropic messages (plain, tools, streaming)
and provider errors. Answers are deterministic, so a call made directly and the same
call made through the proxy return equal objects.

Behaviour by model name: ``error-429`` answers a rate-limit error, ``error-500`` an
internal error, ``slow-<ms>`` waits between stream chunks, ``hang-<ms>`` before
answering. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.support.server import free_port

CREATED = 1_700_000_000
WORDS = ["Hello", " from", " the", " mock", " upstream", "."]


def _id(prefix: str, body: bytes) -> str:
    """Stable for a request: ignores stream_options, which the proxy may add."""
    data = json.loads(body) if body else {}
    data.pop("stream_options", None)
    return prefix + hashlib.sha256(_compact(sorted(data.items())).encode()).hexdigest()[:16]


def _delay(model: str) -> float:
    return int(model.split("-", 1)[1]) / 1000 if model.startswith("slow-") else 0.0


async def _gzipped(events: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """One gzip member over the whole stream, flushed after every event."""
    gz = zlib.compressobj(wbits=31)
    async for event in events:
        yield gz.compress(event.encode()) + gz.flush(zlib.Z_SYNC_FLUSH)
    yield gz.flush()


def _event(data: dict[str, Any]) -> str:
    data.setdefault("sequence_number", 0)
    return f"event: {data['type']}\ndata: {_compact(data)}\n\n"


def _compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


class MockUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
                # Azure OpenAI: deployments in the path, api-version query, api-key header
                Route(
                    "/openai/deployments/{deployment}/chat/completions",
                    self.azure_chat,
                    methods=["POST"],
                ),
            ],
            # like the real APIs, compress JSON answers when asked (streams are left alone)
            middleware=[Middleware(GZipMiddleware, minimum_size=200)],
        )
        self.server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> MockUpstream:
        config = uvicorn.Config(self.app, port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        thread = threading.Thread(target=self.server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True

    async def _record(self, request: Request) -> tuple[bytes, dict[str, Any]]:
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        self.requests.append(
            {
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "body": body,
            }
        )
        return raw, body

    async def azure_chat(self, request: Request) -> Response:
        if "api-version" not in request.query_params:
            error = {"error": {"code": "404", "message": "Resource not found"}}
            return JSONResponse(error, 404)
        if not request.headers.get("api-key"):
            error = {"error": {"code": "401", "message": "Access denied: missing api-key"}}
            return JSONResponse(error, 401)
        return await self.chat(request)

    # OpenAI ---------------------------------------------------------------------------

    def _openai_error(self, model: str) -> Response | None:
        if model == "error-429":
            body = {"error": {"message": "Rate limit reached", "type": "requests",
                              "param": None, "code": "rate_limit_exceeded"}}  # fmt: skip
            return JSONResponse(body, 429, headers={"retry-after": "0", "x-request-id": "req_1"})
        if model == "error-500":
            body = {"error": {"message": "boom", "type": "server_error", "param": None,
                              "code": None}}  # fmt: skip
            return JSONResponse(body, 500)
        return None

    async def chat(self, request: Request) -> Response:
        raw, body = await self._record(request)
        model = body.get("model", "")
        error = self._openai_error(model)
        if error is not None:
            return error
        if model.startswith("hang-"):
            await asyncio.sleep(int(model.split("-", 1)[1]) / 1000)
        cid = _id("chatcmpl-", raw)
        use_tool = bool(body.get("tools"))
        usage = {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
        headers = {"x-request-id": "req_" + cid[-8:], "openai-processing-ms": "3"}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(WORDS)}
            finish = "stop"
            if use_tool:
                message = {"role": "assistant", "content": None, "tool_calls": [self._tool()]}
                finish = "tool_calls"
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            result = {"id": cid, "object": "chat.completion", "created": CREATED,
                      "model": model + "-2024", "choices": [choice], "usage": usage}  # fmt: skip
            return JSONResponse(result, headers=headers)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        delay = _delay(model)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk",
                                    "created": CREATED, "model": model + "-2024",
                                    "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}]}  # fmt: skip
            if include_usage:
                data["usage"] = None
            return f"data: {_compact(data)}\n\n"

        async def events() -> Any:
            yield chunk({"role": "assistant", "content": ""})
            if use_tool:
                call = self._tool()
                name = call["function"]["name"]
                first = {"index": 0, "id": call["id"], "type": "function",
                         "function": {"name": name, "arguments": ""}}  # fmt: skip
                yield chunk({"tool_calls": [first]})
                args = call["function"]["arguments"]
                for part in (args[:10], args[10:]):
                    await asyncio.sleep(delay)
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
                yield chunk({}, "tool_calls")
            else:
                for word in WORDS:
                    await asyncio.sleep(delay)
                    yield chunk({"content": word})
                yield chunk({}, "stop")
            if include_usage:
                data = {"id": cid, "object": "chat.completion.chunk", "created": CREATED,
                        "model": model + "-2024", "choices": [], "usage": usage}  # fmt: skip
                yield f"data: {_compact(data)}\n\n"
            yield "data: [DONE]\n\n"

        if model.startswith("gzip-") and "gzip" in request.headers.get("accept-encoding", ""):
            # some OpenAI-compatible servers compress streams too, flushing every event
            headers["content-encoding"] = "gzip"
            return StreamingResponse(
                _gzipped(events()), media_type="text/event-stream", headers=headers
            )
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @staticmethod
    def _tool() -> dict[str, Any]:
        return {"id": "call_abc123", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip

    async def completions(self, request: Request) -> Response:
        raw, body = await self._record(request)
        choice = {"index": 0, "text": " world", "logprobs": None, "finish_reason": "length"}
        return JSONResponse({"id": _id("cmpl-", raw), "object": "text_completion",
                             "created": CREATED, "model": body.get("model"),
                             "choices": [choice],
                             "usage": {"prompt_tokens": 2, "completion_tokens": 1,
                                       "total_tokens": 3}})  # fmt: skip

    async def embeddings(self, request: Request) -> Response:
        _, body = await self._record(request)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                for i, _ in enumerate(inputs)]  # fmt: skip
        return JSONResponse({"object": "list", "data": data, "model": body.get("model"),
                             "usage": {"prompt_tokens": 4, "total_tokens": 4}})  # fmt: skip

    async def responses(self, request: Request) -> Response:
        raw, body = await self._record(request)
        rid = _id("resp_", raw)
        text = "".join(WORDS)
        part = {"type": "output_text", "text": text, "annotations": []}
        output = [{"type": "message", "id": "msg_1", "status": "completed",
                   "role": "assistant", "content": [part]}]  # fmt: skip
        result = {"id": rid, "object": "response", "created_at": CREATED, "status": "completed",
                  "model": body.get("model"), "output": output, "parallel_tool_calls": True,
                  "tool_choice": "auto", "tools": [],
                  "usage": {"input_tokens": 9, "output_tokens": 6, "total_tokens": 15,
                            "input_tokens_details": {"cached_tokens": 0},
                            "output_tokens_details": {"reasoning_tokens": 0}}}  # fmt: skip
        if not body.get("stream"):
            return JSONResponse(result)
        delay = _delay(str(body.get("model", "")))

        async def events() -> Any:  # the Responses API's typed SSE events
            seq = iter(range(1000))
            started = {**result, "status": "in_progress", "output": [], "usage": None}
            yield _event({"type": "response.created", "response": started})
            item = {"type": "message", "id": "msg_1", "status": "in_progress",
                    "role": "assistant", "content": []}  # fmt: skip
            yield _event({"type": "response.output_item.added", "output_index": 0, "item": item,
                          "sequence_number": next(seq)})  # fmt: skip
            for word in WORDS:
                await asyncio.sleep(delay)
                yield _event({"type": "response.output_text.delta", "item_id": "msg_1",
                              "output_index": 0, "content_index": 0, "delta": word,
                              "logprobs": [], "sequence_number": next(seq)})  # fmt: skip
            yield _event({"type": "response.completed", "response": result,
                          "sequence_number": next(seq)})  # fmt: skip

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(self, request: Request) -> Response:
        await self._record(request)
        entry = {"id": "gpt-4o-mini", "object": "model", "created": CREATED, "owned_by": "mock"}
        return JSONResponse({"object": "list", "data": [entry]})

    # Anthropic ------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        raw, body = await self._record(request)
        model = body.get("model", "")
        if model == "error-overloaded":
            err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            return JSONResponse(err, 529)
        mid = _id("msg_", raw)
        use_tool = bool(body.get("tools"))
        headers = {"request-id": "req_" + mid[-8:]}
        if use_tool:
            content: list[dict[str, Any]] = [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                 "input": {"city": "Paris"}},
            ]  # fmt: skip
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": "".join(WORDS)}]
            stop = "end_turn"
        usage = {"input_tokens": 12, "output_tokens": 7}
        if not body.get("stream"):
            result = {"id": mid, "type": "message", "role": "assistant", "model": model,
                      "content": content, "stop_reason": stop, "stop_sequence": None,
                      "usage": usage}  # fmt: skip
            return JSONResponse(result, headers=headers)
        delay = _delay(model)

        def event(name: str, data: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {_compact({'type': name, **data})}\n\n"

        async def events() -> Any:
            start = {"id": mid, "type": "message", "role": "assistant", "model": model,
                     "content": [], "stop_reason": None, "stop_sequence": None,
                     "usage": {"input_tokens": 12, "output_tokens": 1}}  # fmt: skip
            yield event("message_start", {"message": start})
            yield event("ping", {})
            for index, block in enumerate(content):
                if block["type"] == "text":
                    yield event("content_block_start", {"index": index,
                                "content_block": {"type": "text", "text": ""}})  # fmt: skip
                    for word in WORDS if not use_tool else [block["text"]]:
                        await asyncio.sleep(delay)
                        yield event("content_block_delta", {"index": index,
                                    "delta": {"type": "text_delta", "text": word}})  # fmt: skip
                else:
                    yield event("content_block_start", {"index": index, "content_block": {
                        "type": "tool_use", "id": block["id"], "name": block["name"],
                        "input": {}}})  # fmt: skip
                    for part in ('{"city": ', '"Paris"}'):
                        yield event("content_block_delta", {"index": index, "delta": {
                            "type": "input_json_delta", "partial_json": part}})  # fmt: skip
                yield event("content_block_stop", {"index": index})
            yield event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                          "usage": {"output_tokens": 7}})  # fmt: skip
            yield event("message_stop", {})

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
