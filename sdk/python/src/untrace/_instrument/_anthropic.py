"""Anthropic messages (``client.messages.create`` and the ``messages.stream()``
helper), sync and async, plain and streaming, with tool use. Tool use is reported in
the OpenAI ``tool_calls`` shape so every destination sees one shape; token counts
include cache reads and writes in ``prompt_tokens`` and report cache reads as
``cached_tokens``."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ._call import clean_params

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["AnthropicProvider"]


def _usage(usage: Any, base: dict[str, int] | None = None) -> dict[str, int]:
    out = dict(base or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    input_tokens = getattr(usage, "input_tokens", None)
    if input_tokens is not None:
        cache_read = getattr(usage, "cache_read_input_tokens", None) or 0
        cache_write = getattr(usage, "cache_creation_input_tokens", None) or 0
        out["prompt_tokens"] = input_tokens + cache_read + cache_write
        if cache_read:
            out["cached_tokens"] = cache_read
    output_tokens = getattr(usage, "output_tokens", None)
    if output_tokens is not None:
        out["completion_tokens"] = output_tokens
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    return out


def _message(text: str | None, tools: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tools:
        message["tool_calls"] = tools
    return message


class AnthropicProvider:
    name = "anthropic"
    operation = "chat"

    def prepare(self, kwargs: dict[str, Any], config: Config) -> dict[str, Any] | None:
        return None

    def hide(self, chunk: Any) -> bool:
        return False

    def request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"parameters": clean_params(kwargs)}
        messages = list(kwargs.get("messages") or ())
        system = kwargs.get("system")
        if system is not None and type(system).__name__ not in ("NotGiven", "Omit"):
            messages.insert(0, {"role": "system", "content": system})
        request["messages"] = messages
        tools = kwargs.get("tools")
        if tools is not None and type(tools).__name__ not in ("NotGiven", "Omit"):
            request["tools"] = list(tools)
        return request

    def response(self, result: Any) -> tuple[str | None, dict[str, Any]]:
        texts: list[str] = []
        tools: list[dict[str, Any]] = []
        for block in getattr(result, "content", None) or ():
            kind = getattr(block, "type", None)
            if kind == "text":
                texts.append(block.text)
            elif kind == "tool_use":
                tools.append(
                    {
                        "id": block.id,
                        "type": "function",
                        "function": {"name": block.name, "arguments": json.dumps(block.input)},
                    }
                )
        text = "".join(texts) if texts else None
        response: dict[str, Any] = {
            "content": text,
            "messages": [_message(text, tools)],
            "finish_reason": getattr(result, "stop_reason", None),
        }
        usage = getattr(result, "usage", None)
        if usage is not None:
            response["usage"] = _usage(usage)
        return getattr(result, "model", None), response

    def stream_state(self) -> AnthropicStream:
        return AnthropicStream()


class AnthropicStream:
    __slots__ = ("blocks", "finish_reason", "first_ns", "model", "usage")

    def __init__(self) -> None:
        self.model: str | None = None
        self.first_ns: int | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None

    def add(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            if self.first_ns is None:
                self.first_ns = time.perf_counter_ns()
            block = self.blocks.setdefault(event.index, {"type": "text", "text": []})
            delta = event.delta
            if delta.type == "text_delta":
                block["text"].append(delta.text)
            elif delta.type == "input_json_delta":
                block.setdefault("json", []).append(delta.partial_json)
        elif kind == "content_block_start":
            cb = event.content_block
            block = {"type": cb.type, "text": []}
            if cb.type == "tool_use":
                block["id"] = cb.id
                block["name"] = cb.name
            self.blocks[event.index] = block
        elif kind == "message_start":
            self.model = getattr(event.message, "model", None)
            self.usage = _usage(event.message.usage)
        elif kind == "message_delta":
            self.finish_reason = getattr(event.delta, "stop_reason", None) or self.finish_reason
            if getattr(event, "usage", None) is not None:
                self.usage = _usage(event.usage, self.usage)

    def response(self) -> dict[str, Any]:
        texts: list[str] = []
        tools: list[dict[str, Any]] = []
        for index in sorted(self.blocks):
            block = self.blocks[index]
            if block["type"] == "tool_use":
                tools.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {
                            "name": block.get("name"),
                            "arguments": "".join(block.get("json", ())) or "{}",
                        },
                    }
                )
            else:
                texts.extend(block["text"])
        text = "".join(texts) if texts else None
        response: dict[str, Any] = {"content": text, "messages": [_message(text, tools)]}
        if self.finish_reason is not None:
            response["finish_reason"] = self.finish_reason
        if self.usage is not None:
            response["usage"] = self.usage
        return response
