"""OpenAI chat completions (``client.chat.completions.create``), sync and async,
plain and streaming, with tool calls."""

from __future__ import annotations

import time
from typing import Any

from ._call import clean_params

__all__ = ["TARGETS", "OpenAIProvider"]

# (module, class, method, is_async)
TARGETS = (
    ("openai.resources.chat.completions", "Completions", "create", False),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", True),
)


def _usage(usage: Any) -> dict[str, int] | None:
    if usage is None:
        return None
    out = {
        "prompt_tokens": usage.prompt_tokens or 0,
        "completion_tokens": usage.completion_tokens or 0,
        "total_tokens": usage.total_tokens or 0,
    }
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    if cached:
        out["cached_tokens"] = cached
    return out


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    out = []
    for call in calls:
        fn = getattr(call, "function", None)
        out.append(
            {
                "id": call.id,
                "type": getattr(call, "type", "function"),
                "function": {
                    "name": getattr(fn, "name", None),
                    "arguments": getattr(fn, "arguments", None),
                },
            }
        )
    return out


class OpenAIProvider:
    name = "openai"

    def request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"parameters": clean_params(kwargs)}
        messages = kwargs.get("messages")
        if messages is not None:
            request["messages"] = list(messages)
        tools = kwargs.get("tools")
        if tools is not None and type(tools).__name__ not in ("NotGiven", "Omit"):
            request["tools"] = list(tools)
        return request

    def response(self, result: Any) -> tuple[str | None, dict[str, Any]]:
        response: dict[str, Any] = {}
        choices = getattr(result, "choices", None) or []
        if choices:
            choice = choices[0]
            message = choice.message
            response["content"] = message.content
            response["finish_reason"] = choice.finish_reason
            out: dict[str, Any] = {"role": message.role or "assistant", "content": message.content}
            if message.tool_calls:
                out["tool_calls"] = _tool_calls(message.tool_calls)
            response["messages"] = [out]
        usage = _usage(getattr(result, "usage", None))
        if usage is not None:
            response["usage"] = usage
        return getattr(result, "model", None), response

    def stream_state(self) -> OpenAIStream:
        return OpenAIStream()


class OpenAIStream:
    __slots__ = ("content", "finish_reason", "first_ns", "model", "tools", "usage")

    def __init__(self) -> None:
        self.model: str | None = None
        self.first_ns: int | None = None
        self.content: list[str] = []
        self.tools: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None

    def add(self, chunk: Any) -> None:
        if self.model is None:
            self.model = getattr(chunk, "model", None)
        for choice in chunk.choices or ():
            if choice.index:
                continue
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    if self.first_ns is None:
                        self.first_ns = time.perf_counter_ns()
                    self.content.append(delta.content)
                if delta.tool_calls:
                    if self.first_ns is None:
                        self.first_ns = time.perf_counter_ns()
                    for tc in delta.tool_calls:
                        slot = self.tools.setdefault(
                            tc.index,
                            {
                                "id": None,
                                "type": "function",
                                "function": {"name": "", "arguments": ""},
                            },
                        )
                        if tc.id:
                            slot["id"] = tc.id
                        fn = tc.function
                        if fn is not None:
                            if fn.name:
                                slot["function"]["name"] += fn.name
                            if fn.arguments:
                                slot["function"]["arguments"] += fn.arguments
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        if getattr(chunk, "usage", None) is not None:
            self.usage = _usage(chunk.usage)

    def response(self) -> dict[str, Any]:
        content = "".join(self.content) if self.content else None
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.tools:
            message["tool_calls"] = [self.tools[i] for i in sorted(self.tools)]
        response: dict[str, Any] = {"content": content, "messages": [message]}
        if self.finish_reason is not None:
            response["finish_reason"] = self.finish_reason
        if self.usage is not None:
            response["usage"] = self.usage
        return response
