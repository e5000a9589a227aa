"""OpenAI Responses API (``client.responses.create``, and the ``responses.stream()``
helper, which calls it), sync and async, plain and streaming, with function calls.

Reported in the chat shape every destination reads: ``instructions`` become the system
message, a string ``input`` the user message, input items become messages (function
calls as assistant ``tool_calls``, their outputs as ``tool`` messages); output text and
function calls become the assistant message; ``input_tokens`` / ``output_tokens`` become
``prompt_tokens`` / ``completion_tokens``. A stream always ends with the whole response
(``response.completed``), usage included: nothing needs to be asked for.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._call import clean_params

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["ResponsesProvider"]

# the stream events that carry the finished response
_FINAL_EVENTS = frozenset(("response.completed", "response.incomplete", "response.failed"))
_DELTA_EVENTS = frozenset(
    (
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
    )
)


def _get(item: Any, key: str) -> Any:
    """A field of an input/output item: a dict (what callers pass) or an SDK model
    (what they pass back from an earlier response)."""
    if isinstance(item, dict):
        return item.get(key)
    return getattr(item, key, None)


def _tool_call(item: Any) -> dict[str, Any]:
    return {
        "id": _get(item, "call_id"),
        "type": "function",
        "function": {"name": _get(item, "name"), "arguments": _get(item, "arguments")},
    }


def _input_message(item: Any) -> dict[str, Any]:
    kind = _get(item, "type")
    role = _get(item, "role")
    if role is not None:
        return {"role": role, "content": _get(item, "content")}
    if kind == "function_call":
        return {"role": "assistant", "content": None, "tool_calls": [_tool_call(item)]}
    if kind == "function_call_output":
        call_id = _get(item, "call_id")
        return {"role": "tool", "tool_call_id": call_id, "content": _get(item, "output")}
    # any other item (reasoning, a built-in tool call, ...): kept, named by its type
    return {"role": str(kind or "unknown"), "content": item}


def _usage(usage: Any) -> dict[str, int] | None:
    if usage is None:
        return None
    prompt = getattr(usage, "input_tokens", None) or 0
    completion = getattr(usage, "output_tokens", None) or 0
    out = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": getattr(usage, "total_tokens", None) or prompt + completion,
    }
    details = getattr(usage, "input_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    if cached:
        out["cached_tokens"] = cached
    return out


def _finish_reason(status: Any, tools: list[dict[str, Any]], incomplete: Any) -> str | None:
    if tools:
        return "tool_calls"
    if status == "completed":
        return "stop"
    if status == "incomplete":
        return getattr(incomplete, "reason", None) or "incomplete"
    return status if isinstance(status, str) else None


def _output(items: Any) -> tuple[str | None, list[dict[str, Any]]]:
    texts: list[str] = []
    tools: list[dict[str, Any]] = []
    for item in items or ():
        kind = getattr(item, "type", None)
        if kind == "message":
            for part in getattr(item, "content", None) or ():
                part_type = getattr(part, "type", None)
                if part_type == "output_text":
                    texts.append(part.text)
                elif part_type == "refusal":
                    texts.append(part.refusal)
        elif kind == "function_call":
            tools.append(_tool_call(item))
    return ("".join(texts) if texts else None), tools


def _response(
    text: str | None, tools: list[dict[str, Any]], finish: str | None, usage: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tools:
        message["tool_calls"] = tools
    response: dict[str, Any] = {"content": text, "messages": [message]}
    if finish is not None:
        response["finish_reason"] = finish
    if usage is not None:
        response["usage"] = usage
    return response


class ResponsesProvider:
    name = "openai"
    operation = "responses"

    def request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"parameters": clean_params(kwargs)}
        messages: list[dict[str, Any]] = []
        instructions = kwargs.get("instructions")
        if isinstance(instructions, str):
            messages.append({"role": "system", "content": instructions})
        given = kwargs.get("input")
        if isinstance(given, str):
            messages.append({"role": "user", "content": given})
        elif given is not None and type(given).__name__ not in ("NotGiven", "Omit"):
            messages.extend(_input_message(item) for item in given)
        request["messages"] = messages
        tools = kwargs.get("tools")
        if tools is not None and type(tools).__name__ not in ("NotGiven", "Omit"):
            request["tools"] = list(tools)
        return request

    def response(self, result: Any) -> tuple[str | None, dict[str, Any]]:
        text, tools = _output(getattr(result, "output", None))
        finish = _finish_reason(
            getattr(result, "status", None), tools, getattr(result, "incomplete_details", None)
        )
        usage = _usage(getattr(result, "usage", None))
        return getattr(result, "model", None), _response(text, tools, finish, usage)

    def stream_state(self) -> ResponsesStream:
        return ResponsesStream()

    def prepare(self, kwargs: dict[str, Any], config: Config) -> dict[str, Any] | None:
        return None

    def hide(self, chunk: Any) -> bool:
        return False


class ResponsesStream:
    """What a Responses stream delivered: the final response when it got that far;
    otherwise the text deltas and the output items finished so far."""

    __slots__ = ("final", "first_ns", "items", "model", "texts")

    def __init__(self) -> None:
        self.model: str | None = None
        self.first_ns: int | None = None
        self.texts: list[str] = []
        self.items: dict[int, Any] = {}
        self.final: Any = None

    def add(self, event: Any) -> None:
        kind = event.type
        if kind in _DELTA_EVENTS:
            if self.first_ns is None:
                self.first_ns = time.perf_counter_ns()
            if kind != "response.function_call_arguments.delta":
                self.texts.append(event.delta)
        elif kind == "response.output_item.done":
            self.items[event.output_index] = event.item
        elif kind in _FINAL_EVENTS:
            self.final = event.response
            self.model = getattr(event.response, "model", None) or self.model
        elif kind == "response.created":
            self.model = getattr(event.response, "model", None)

    def response(self) -> dict[str, Any]:
        if self.final is not None:
            return ResponsesProvider().response(self.final)[1]
        text, tools = _output(self.items[i] for i in sorted(self.items))
        if text is None and self.texts:
            text = "".join(self.texts)
        return _response(text, tools, "tool_calls" if tools else None, None)
