"""OpenAI chat completions (``client.chat.completions.create``, and the
``chat.completions.stream()`` helper, which calls it), sync and async, plain and
streaming, with tool calls.

A stream whose caller did not ask for usage is asked for it
(``stream_options.include_usage``, as the Untrace proxy does), unless
``Config.openai_stream_usage`` is off: the trace gets the provider's token counts and
the caller gets the chunks it would have had — the final usage-only chunk is not
yielded, and the ``usage: null`` the option puts on every other chunk is forgotten, so
``chunk.to_dict()`` is unchanged too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._call import clean_params

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["OpenAIProvider", "ask_for_usage"]

# the openai SDK's with_raw_response / with_streaming_response mark: the result is not
# a Stream we can filter, so the request is left alone
_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


def _given(value: Any) -> bool:
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit")


def ask_for_usage(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """``kwargs`` with ``stream_options.include_usage`` set, or None when the call is
    not a stream, already asks for usage, or is not ours to change."""
    if kwargs.get("stream") is not True:
        return None
    options = kwargs.get("stream_options")
    if _given(options) and (not isinstance(options, dict) or options.get("include_usage")):
        return None
    extra_body = kwargs.get("extra_body")
    if isinstance(extra_body, dict) and "stream_options" in extra_body:
        return None
    headers = kwargs.get("extra_headers")
    if headers and any(str(k).lower() == _RAW_RESPONSE_HEADER.lower() for k in headers):
        return None
    merged = dict(options) if isinstance(options, dict) else {}
    merged["include_usage"] = True
    return {**kwargs, "stream_options": merged}


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
    operation = "chat"

    def prepare(self, kwargs: dict[str, Any], config: Config) -> dict[str, Any] | None:
        return ask_for_usage(kwargs) if config.openai_stream_usage else None

    def hide(self, chunk: Any) -> bool:
        if chunk.usage is None:
            # include_usage sends "usage": null on every chunk; without it the field is
            # absent: forget it was set, so the chunk dumps as it would have
            chunk.__pydantic_fields_set__.discard("usage")
            return False
        return not chunk.choices

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
