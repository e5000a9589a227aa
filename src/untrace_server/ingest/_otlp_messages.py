"""The conversation of a span, from whichever convention its instrumentation used.

Input, first match wins (structured messages before opaque values):
  1. ``gen_ai.input.messages`` (+ ``gen_ai.system_instructions``), current GenAI
  2. ``llm.input_messages.<i>.message.*``, OpenInference
  3. ``gen_ai.prompt.<i>.*``, deprecated GenAI / OpenLLMetry
  4. message events (``gen_ai.system.message``, ``gen_ai.user.message``, …) and
     ``gen_ai.client.inference.operation.details`` events
  5. values: ``langfuse.observation.input``, ``traceloop.entity.input``, ``input.value``,
     ``gen_ai.prompt`` (LangSmith), read as messages when they are, else as text.
Output mirrors it (``gen_ai.output.messages``, ``llm.output_messages``,
``gen_ai.completion.<i>.*``, ``gen_ai.choice`` events, ``…output`` values).
"""

from __future__ import annotations

from typing import Any

from untrace_server.ingest._content import (
    as_text,
    loads,
    messages_from,
    text_messages,
    to_message,
    tool_call,
)
from untrace_server.model import Message

__all__ = ["conversation"]

_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_IN_VALUES = (
    "langfuse.observation.input",
    "traceloop.entity.input",
    "input.value",
    "gen_ai.prompt",
    "input",
)
_OUT_VALUES = (
    "langfuse.observation.output",
    "traceloop.entity.output",
    "output.value",
    "gen_ai.completion",
    "output",
)
_FLAT = ("llm.input_messages.", "llm.output_messages.", "gen_ai.prompt.", "gen_ai.completion.")


def _flattened(attrs: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    """``prefix.<i>.rest`` keys grouped by prefix and index (only when present)."""
    groups: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in attrs.items():
        if key[:4] not in ("llm.", "gen_") or not key.startswith(_FLAT):
            continue
        for prefix in _FLAT:
            if key.startswith(prefix):
                index, _, rest = key[len(prefix) :].partition(".")
                if index.isdigit() and rest:
                    groups.setdefault(prefix, {}).setdefault(int(index), {})[rest] = value
                break
    return groups


def _flat_message(fields: dict[str, Any]) -> Message:
    fields = {k.removeprefix("message."): v for k, v in fields.items()}
    calls: dict[int, dict[str, Any]] = {}
    parts: dict[int, dict[str, Any]] = {}
    for key, value in fields.items():
        if key.startswith("tool_calls."):
            index, _, rest = key[len("tool_calls.") :].partition(".")
            rest = rest.removeprefix("tool_call.")
            call = calls.setdefault(int(index) if index.isdigit() else 0, {})
            if rest.startswith("function."):
                call.setdefault("function", {})[rest[len("function.") :]] = value
            else:
                call[rest] = value
        elif key.startswith("contents."):
            index, _, rest = key[len("contents.") :].partition(".")
            part = parts.setdefault(int(index) if index.isdigit() else 0, {})
            part[rest.removeprefix("message_content.")] = value
    content: Any = fields.get("content")
    if content is None and parts:
        content = [parts[i] for i in sorted(parts)]
        if all(p.get("type") == "text" for p in content):
            content = "".join(str(p.get("text", "")) for p in content)
    return Message(
        role=str(fields.get("role") or "user"),
        content=content,
        name=fields.get("name"),
        tool_calls=[tool_call(calls[i]) for i in sorted(calls)] or None,
        tool_call_id=fields.get("tool_call_id"),
    )


def _from_flat(group: dict[int, dict[str, Any]] | None) -> list[Message] | None:
    if not group:
        return None
    return [_flat_message(group[i]) for i in sorted(group)]


def _genai(attrs: dict[str, Any], key: str, system: bool) -> list[Message] | None:
    raw = attrs.get(key)
    if raw is None:
        return None
    found = text_messages(raw) or messages_from(raw) or []
    if system and (instructions := loads(attrs.get("gen_ai.system_instructions"))):
        parts = (
            instructions
            if isinstance(instructions, list)
            else [{"type": "text", "content": str(instructions)}]
        )
        text = "".join(str(p.get("content", "")) for p in parts if isinstance(p, dict))
        found.insert(0, Message(role="system", content=text))
    return found or None


def _events(events: list[tuple[str, int, dict[str, Any]]]) -> tuple[list[Message], list[Message]]:
    inputs: list[Message] = []
    outputs: list[Message] = []
    for name, _, attrs in events:
        if name in _EVENT_ROLES:
            body = loads(attrs.get("content", attrs.get("body")))
            message = to_message(body) if isinstance(body, dict) else None
            inputs.append(message or Message(role=_EVENT_ROLES[name], content=as_text(body)))
        elif name == "gen_ai.choice":
            body = loads(attrs.get("message", attrs.get("body", attrs.get("content"))))
            message = to_message(body) if isinstance(body, dict) else None
            outputs.append(message or Message(role="assistant", content=as_text(body)))
        elif name == "gen_ai.client.inference.operation.details":
            inputs.extend(_genai(attrs, "gen_ai.input.messages", True) or [])
            outputs.extend(_genai(attrs, "gen_ai.output.messages", False) or [])
    return inputs, outputs


def _value(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def conversation(
    attrs: dict[str, Any], events: list[tuple[str, int, dict[str, Any]]]
) -> tuple[list[Message] | None, str | None, list[Message] | None, str | None]:
    """(input messages, input text, output messages, output text) of a span."""
    in_msgs = _genai(attrs, "gen_ai.input.messages", True)
    out_msgs = _genai(attrs, "gen_ai.output.messages", False)
    if in_msgs is None or out_msgs is None:  # the flattened forms, only when needed
        flat = _flattened(attrs)
        in_msgs = (
            in_msgs
            or _from_flat(flat.get("llm.input_messages."))
            or _from_flat(flat.get("gen_ai.prompt."))
        )
        out_msgs = (
            out_msgs
            or _from_flat(flat.get("llm.output_messages."))
            or _from_flat(flat.get("gen_ai.completion."))
        )
    if events and (in_msgs is None or out_msgs is None):
        ev_in, ev_out = _events(events)
        in_msgs = in_msgs or ev_in or None
        out_msgs = out_msgs or ev_out or None
    in_text = out_text = None
    if in_msgs is None and (raw := _value(attrs, _IN_VALUES)) is not None:
        in_msgs = messages_from(raw)
        in_text = None if in_msgs else as_text(raw)
    if out_msgs is None and (raw := _value(attrs, _OUT_VALUES)) is not None:
        out_msgs = messages_from(raw)
        out_text = None if out_msgs else as_text(raw)
    return in_msgs, in_text, out_msgs, out_text
