"""What every connector reads from a Trace, in one place: messages as plain dicts,
usage, user, tags, free metadata, and field truncation that marks what it cut."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec

from untrace_server.model import Message, Trace

__all__ = [
    "TRUNCATION_MARK",
    "Truncator",
    "dumps",
    "free_metadata",
    "input_messages",
    "iso",
    "output_messages",
    "output_text",
    "tag_list",
    "tags",
    "user_id",
]

TRUNCATION_MARK = "…[truncated by untrace]"
_RESERVED = {"customerId", "applicationId", "environment", "version", "tags", "userId", "rootId"}


def dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _message(message: Message) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.to_builtins(message)
    return result


def input_messages(trace: Trace) -> list[dict[str, Any]]:
    request = trace.request
    if request.messages:
        return [_message(m) for m in request.messages]
    if request.prompt is not None:
        return [{"role": "user", "content": request.prompt}]
    return []


def output_messages(trace: Trace) -> list[dict[str, Any]]:
    response = trace.response
    if response.messages:
        return [_message(m) for m in response.messages]
    if response.content is not None:
        return [{"role": "assistant", "content": response.content}]
    return []


def output_text(trace: Trace) -> str | None:
    if trace.response.content is not None:
        return trace.response.content
    messages = output_messages(trace)
    if len(messages) == 1 and isinstance(messages[0].get("content"), str):
        return str(messages[0]["content"])
    return dumps(messages) if messages else None


def tags(trace: Trace) -> dict[str, str]:
    value = trace.metadata.get("tags")
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def tag_list(trace: Trace) -> list[str]:
    """Tags as ``key:value`` strings (``key`` alone when the value is empty)."""
    return [f"{k}:{v}" if v else k for k, v in tags(trace).items()]


def user_id(trace: Trace) -> str | None:
    value = trace.metadata.get("userId")
    return value if isinstance(value, str) and value else None


def free_metadata(trace: Trace) -> dict[str, Any]:
    return {k: v for k, v in trace.metadata.items() if k not in _RESERVED}


def iso(ms: int) -> str:
    """RFC 3339 with microseconds and an offset."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="microseconds")


class Truncator:
    """Cuts strings longer than ``limit`` UTF-8 bytes and remembers which fields it cut,
    so the connector can mark the trace instead of dropping it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cut: list[str] = []

    def text(self, name: str, value: str) -> str:
        raw = value.encode()
        if len(raw) <= self.limit:
            return value
        self.cut.append(name)
        keep = max(0, self.limit - len(TRUNCATION_MARK.encode()))
        return raw[:keep].decode(errors="ignore") + TRUNCATION_MARK

    def json(self, name: str, value: Any) -> Any:
        """``value`` itself when small enough, else its JSON text cut to the limit."""
        text = value if isinstance(value, str) else dumps(value)
        if len(text.encode()) <= self.limit:
            return value
        return self.text(name, text)


def loads_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
