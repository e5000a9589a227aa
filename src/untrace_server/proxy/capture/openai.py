"""OpenAI-compatible calls (chat completions, completions, embeddings, responses) →
Trace, from the raw request and the response body or the stream's chunks."""

from __future__ import annotations

from typing import Any

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

_NOT_PARAMETERS = frozenset({"model", "messages", "prompt", "input", "tools", "instructions"})
_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def build(exchange: Exchange) -> model.Trace:
    request = body_json(exchange.request_body)
    if not isinstance(request, dict):
        request = {}
    trace = base_trace(exchange, request)
    _capture_request(trace, exchange.endpoint, request)
    first_at: float | None = None
    if exchange.stream:
        first_at = _capture_stream(trace, exchange)
    elif exchange.status is not None:
        body = body_json(exchange.body, exchange.content_encoding)
        if exchange.status >= 400:
            trace.error = error_from_body(exchange.status, body)
        elif isinstance(body, dict):
            _capture_body(trace, exchange.endpoint, body)
    usage = trace.response.usage
    trace.metrics.time_to_first_token_ms = first_token_ms(exchange, first_at)
    if usage is not None and exchange.endpoint != "embeddings":
        trace.metrics.tokens_per_second = tokens_per_second(
            exchange, usage.completion_tokens, first_at
        )
    return trace


def _capture_request(trace: model.Trace, endpoint: str, request: dict[str, Any]) -> None:
    req = trace.request
    req.parameters = {k: v for k, v in request.items() if k not in _NOT_PARAMETERS}
    tools = request.get("tools")
    req.tools = tools if isinstance(tools, list) else None
    if endpoint == "embeddings":
        trace.kind = "embedding"
    if isinstance(request.get("messages"), list):
        req.messages = to_messages(request["messages"])
    prompt = request.get("prompt", request.get("input"))
    if isinstance(prompt, str):
        req.prompt = prompt
    elif isinstance(prompt, list) and endpoint == "responses":
        req.messages = to_messages(prompt)
    elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        req.prompt = "\n".join(prompt)
    instructions = request.get("instructions")
    if isinstance(instructions, str):
        req.messages = [model.Message(role="system", content=instructions), *(req.messages or [])]


def _usage(raw: Any) -> model.Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = int(raw.get("prompt_tokens", raw.get("input_tokens", 0)) or 0)
    completion = int(raw.get("completion_tokens", raw.get("output_tokens", 0)) or 0)
    details = raw.get("prompt_tokens_details") or raw.get("input_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return model.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(raw.get("total_tokens", prompt + completion) or 0),
        cached_tokens=cached if isinstance(cached, int) else None,
    )


def _capture_body(trace: model.Trace, endpoint: str, body: dict[str, Any]) -> None:
    resp = trace.response
    if isinstance(body.get("model"), str):
        trace.model = body["model"]
    resp.usage = _usage(body.get("usage"))
    if endpoint == "responses":
        _capture_responses_output(trace, body)
        return
    messages = []
    for choice in body.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            tool_calls = message.get("tool_calls")
            messages.append(
                model.Message(
                    role=str(message.get("role") or "assistant"),
                    content=message.get("content"),
                    tool_calls=tool_calls if isinstance(tool_calls, list) else None,
                )
            )
        elif isinstance(choice.get("text"), str):
            messages.append(model.Message(role="assistant", content=choice["text"]))
        if resp.finish_reason is None and choice.get("finish_reason"):
            resp.finish_reason = str(choice["finish_reason"])
    if messages:
        resp.messages = messages
        first = messages[0].content
        resp.content = first if isinstance(first, str) else None


def _capture_responses_output(trace: model.Trace, body: dict[str, Any]) -> None:
    """The Responses API: output items (message text, function calls) and status."""
    texts: list[str] = []
    tool_calls = []
    for item in body.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
        elif item.get("type") == "function_call":
            tool_calls.append(
                {
                    "id": item.get("call_id") or item.get("id"),
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments")},
                }
            )
    resp = trace.response
    resp.content = "".join(texts) if texts else None
    resp.messages = [
        model.Message(role="assistant", content=resp.content, tool_calls=tool_calls or None)
    ]
    if isinstance(body.get("status"), str):
        resp.finish_reason = body["status"]


def _capture_stream(trace: model.Trace, exchange: Exchange) -> float | None:
    """Assemble content and tool calls from the deltas; returns when the first token came."""
    if exchange.status is not None and exchange.status >= 400:
        raw = b"".join(c for _, c in exchange.chunks)
        trace.error = error_from_body(exchange.status, body_json(raw, exchange.content_encoding))
        return None
    if exchange.endpoint == "responses":
        return _capture_responses_stream(trace, exchange)
    first_at: float | None = None
    choices: dict[int, dict[str, Any]] = {}
    for at, _name, data in sse_events(plain_chunks(exchange)):
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("model"), str):
            trace.model = data["model"]
        if data.get("usage"):
            trace.response.usage = _usage(data["usage"])
        if isinstance(data.get("error"), dict):
            trace.error = error_from_body(200, data)
        for choice in data.get("choices") or []:
            index = choice.get("index", 0)
            acc = choices.setdefault(index, {"content": [], "tools": {}, "role": "assistant"})
            delta = choice.get("delta") or {}
            text = delta.get("content") if "delta" in choice else choice.get("text")
            if text:
                acc["content"].append(text)
                first_at = first_at or at
            for call in delta.get("tool_calls") or []:
                first_at = first_at or at
                slot = acc["tools"].setdefault(
                    call.get("index", 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                slot["id"] = call.get("id") or slot["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                acc["finish_reason"] = choice["finish_reason"]
    messages = []
    for index in sorted(choices):
        acc = choices[index]
        tools = [acc["tools"][i] for i in sorted(acc["tools"])]
        messages.append(
            model.Message(
                role="assistant",
                content="".join(acc["content"]) if acc["content"] else None,
                tool_calls=tools or None,
            )
        )
        if trace.response.finish_reason is None and acc.get("finish_reason"):
            trace.response.finish_reason = str(acc["finish_reason"])
    if messages:
        trace.response.messages = messages
        trace.response.content = messages[0].content
    return first_at


def _capture_responses_stream(trace: model.Trace, exchange: Exchange) -> float | None:
    first_at: float | None = None
    texts: list[str] = []
    for at, _name, data in sse_events(plain_chunks(exchange)):
        if not isinstance(data, dict):
            continue
        kind = data.get("type", "")
        if kind == "response.output_text.delta":
            first_at = first_at or at
            texts.append(str(data.get("delta") or ""))
        elif kind in _FINAL_EVENTS and isinstance(data.get("response"), dict):
            _capture_body(trace, "responses", data["response"])
    if trace.response.content is None and texts:
        trace.response.content = "".join(texts)
    return first_at
