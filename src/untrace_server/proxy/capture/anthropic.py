"""Anthropic Messages API calls (``/v1/messages``, streaming included) → Trace.

Tool uses become OpenAI-style ``tool_calls`` (``{"id", "type": "function", "function":
{"name", "arguments"}}``) so every destination sees one shape. Usage comes from the
provider: ``message_start`` (input) and ``message_delta`` (output) on a stream.
"""

from __future__ import annotations

from typing import Any

import msgspec

from untrace_server import model
from untrace_server.proxy.capture.base import (
    Exchange,
    base_trace,
    body_json,
    error_from_body,
    first_token_ms,
    plain_chunks,
    sse_events,
    to_messages,
    tokens_per_second,
)

__all__ = ["build"]

_NOT_PARAMETERS = frozenset({"model", "messages", "system", "tools"})
_json = msgspec.json.Encoder()


def build(exchange: Exchange) -> model.Trace:
    request = body_json(exchange.request_body)
    if not isinstance(request, dict):
        request = {}
    trace = base_trace(exchange, request)
    req = trace.request
    req.parameters = {k: v for k, v in request.items() if k not in _NOT_PARAMETERS}
    req.tools = request["tools"] if isinstance(request.get("tools"), list) else None
    req.messages = to_messages(request.get("messages"))
    system = request.get("system")
    if system:
        req.messages = [model.Message(role="system", content=system), *(req.messages or [])]
    first_at: float | None = None
    if exchange.status is not None and exchange.status >= 400:
        raw = b"".join(c for _, c in exchange.chunks) if exchange.stream else exchange.body
        trace.error = error_from_body(exchange.status, body_json(raw, exchange.content_encoding))
    elif exchange.stream:
        first_at = _capture_stream(trace, exchange)
    elif exchange.status is not None:
        body = body_json(exchange.body, exchange.content_encoding)
        if isinstance(body, dict):
            _capture_message(trace, body)
    trace.metrics.time_to_first_token_ms = first_token_ms(exchange, first_at)
    if trace.response.usage is not None:
        trace.metrics.tokens_per_second = tokens_per_second(
            exchange, trace.response.usage.completion_tokens, first_at
        )
    return trace


def _usage(raw: dict[str, Any], into: model.Usage | None = None) -> model.Usage:
    usage = into or model.Usage()
    if "input_tokens" in raw:
        cache_read = int(raw.get("cache_read_input_tokens") or 0)
        cache_write = int(raw.get("cache_creation_input_tokens") or 0)
        usage.prompt_tokens = int(raw.get("input_tokens") or 0) + cache_read + cache_write
        usage.cached_tokens = cache_read or usage.cached_tokens
    if "output_tokens" in raw:
        usage.completion_tokens = int(raw.get("output_tokens") or 0)
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    return usage


def _tool_call(block: dict[str, Any], arguments: str) -> dict[str, Any]:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments},
    }


def _capture_message(trace: model.Trace, body: dict[str, Any]) -> None:
    if isinstance(body.get("model"), str):
        trace.model = body["model"]
    texts: list[str] = []
    tools = []
    for block in body.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            tools.append(_tool_call(block, _json.encode(block.get("input") or {}).decode()))
    _set_response(trace, texts, tools, body.get("stop_reason"))
    if isinstance(body.get("usage"), dict):
        trace.response.usage = _usage(body["usage"])


def _set_response(trace: model.Trace, texts: list[str], tools: list[Any], stop: Any) -> None:
    resp = trace.response
    resp.content = "".join(texts) if texts else None
    resp.messages = [
        model.Message(role="assistant", content=resp.content, tool_calls=tools or None)
    ]
    resp.finish_reason = str(stop) if stop else None


def _capture_stream(trace: model.Trace, exchange: Exchange) -> float | None:
    first_at: float | None = None
    blocks: dict[int, dict[str, Any]] = {}
    usage: model.Usage | None = None
    stop = None
    for at, _name, data in sse_events(plain_chunks(exchange)):
        if not isinstance(data, dict):
            continue
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            if isinstance(message.get("model"), str):
                trace.model = message["model"]
            if isinstance(message.get("usage"), dict):
                usage = _usage(message["usage"], usage)
        elif kind == "content_block_start":
            block = dict(data.get("content_block") or {})
            block["parts"] = [block.get("text") or ""]
            blocks[data.get("index", len(blocks))] = block
        elif kind == "content_block_delta":
            block = blocks.setdefault(data.get("index", 0), {"type": "text", "parts": []})
            delta = data.get("delta") or {}
            piece = delta.get("text", delta.get("partial_json", delta.get("thinking")))
            if piece:
                block["parts"].append(piece)
                if delta.get("type") in ("text_delta", "input_json_delta"):
                    first_at = first_at or at
        elif kind == "message_delta":
            stop = (data.get("delta") or {}).get("stop_reason") or stop
            if isinstance(data.get("usage"), dict):
                usage = _usage(data["usage"], usage)
        elif kind == "error":
            trace.error = error_from_body(200, data)
    texts, tools = [], []
    for index in sorted(blocks):
        block = blocks[index]
        joined = "".join(block["parts"])
        if block.get("type") == "text":
            texts.append(joined)
        elif block.get("type") == "tool_use":
            tools.append(_tool_call(block, joined or "{}"))
    _set_response(trace, texts, tools, stop)
    trace.response.usage = usage
    return first_at
