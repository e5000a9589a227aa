"""Content normalisation the compatibility receivers share: whatever shape a client used
for the conversation (OpenAI messages, GenAI ``{role, parts}``, LangChain messages,
``{"messages": [...]}``, ``{"choices": [...]}``, plain text, JSON text) becomes
Untrace ``Message`` lists or a text."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from untrace_server.model import Message

__all__ = ["as_text", "loads", "messages_from", "text_messages", "to_message", "tool_call"]

_LC_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "function",
    "HumanMessage": "user",
    "AIMessage": "assistant",
    "SystemMessage": "system",
    "ToolMessage": "tool",
}
_ROLES = {"user", "assistant", "system", "tool", "developer", "function", "model"}


class _TextPart(msgspec.Struct):
    type: Literal["text"]
    content: str


class _TextMessage(msgspec.Struct):
    role: str
    parts: list[_TextPart]
    name: str | None = None


_text_messages = msgspec.json.Decoder(list[_TextMessage])


def loads(value: Any) -> Any:
    """JSON text to a value; anything else (or text that is not JSON) unchanged."""
    if isinstance(value, str | bytes) and value[:1] in ("{", "[", b"{", b"["):
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError:
            return value
    return value


def text_messages(raw: Any) -> list[Message] | None:
    """GenAI ``[{role, parts: [{type: "text", content}]}]`` JSON text straight into
    Messages, without the generic walk over decoded dicts; None when ``raw`` has another
    shape (tool calls, media, …), which ``messages_from`` then reads. Both give the same
    Messages for the text-only shape, which is what most chat spans carry."""
    if not isinstance(raw, str | bytes):
        return None
    try:
        decoded = _text_messages.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return [
        Message(
            role=m.role,
            content="".join([p.content for p in m.parts]) if m.parts else None,
            name=m.name,
        )
        for m in decoded
    ] or None


def as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """OpenAI-shaped tool call from OpenAI, GenAI-part or flattened shapes."""
    function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
    name = function.get("name", call.get("name"))
    arguments = function.get("arguments", call.get("arguments"))
    if arguments is not None and not isinstance(arguments, str):
        arguments = as_text(arguments)
    result: dict[str, Any] = {
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    if call.get("id"):
        result["id"] = call["id"]
    return result


def _from_parts(message: dict[str, Any]) -> Message:
    texts: list[str] = []
    others: list[Any] = []
    calls: list[dict[str, Any]] = []
    tool_call_id = None
    result = None
    for part in message.get("parts") or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("content", "")))
        elif kind == "tool_call":
            calls.append(tool_call(part))
        elif kind == "tool_call_response":
            tool_call_id = part.get("id")
            result = part.get("result", part.get("response"))
        else:
            others.append(part)
    role = str(message.get("role", "user"))
    if tool_call_id is not None:
        return Message(role="tool", content=as_text(result), tool_call_id=str(tool_call_id))
    content: Any = (
        "".join(texts) if not others else [*({"type": "text", "text": t} for t in texts), *others]
    )
    if not texts and not others:
        content = None
    return Message(role=role, content=content, tool_calls=calls or None, name=message.get("name"))


def to_message(value: Any) -> Message | None:
    """One message in any known shape, or None when ``value`` is not a message."""
    if not isinstance(value, dict):
        return None
    if "lc" in value and isinstance(value.get("kwargs"), dict):  # serialized LangChain
        ids = value.get("id") or []
        kwargs = dict(value["kwargs"])
        kwargs.setdefault("type", ids[-1] if ids else "human")
        value = kwargs
    if "parts" in value and "role" in value:
        return _from_parts(value)
    role = value.get("role")
    if role is None and "type" in value:
        role = _LC_ROLES.get(str(value["type"]))
    if not isinstance(role, str) or (role not in _ROLES and "content" not in value):
        return None
    calls = value.get("tool_calls")
    return Message(
        role=_LC_ROLES.get(role, role),
        content=value.get("content"),
        name=value.get("name") if isinstance(value.get("name"), str) else None,
        tool_calls=[tool_call(c) for c in calls if isinstance(c, dict)] if calls else None,
        tool_call_id=value.get("tool_call_id"),
    )


def _message_list(values: list[Any]) -> list[Message] | None:
    if values and isinstance(values[0], list):  # LangChain batches: [[m, m]]
        values = values[0]
    out = [to_message(v) for v in values]
    if not out or any(m is None for m in out):
        return None
    return [m for m in out if m is not None]


def messages_from(value: Any) -> list[Message] | None:
    """Messages found in ``value`` (inputs or outputs of a call), or None."""
    value = loads(value)
    if isinstance(value, list):
        return _message_list(value)
    if not isinstance(value, dict):
        return None
    for key in ("messages", "input_messages", "output_messages"):
        if isinstance(value.get(key), list):
            return _message_list(value[key])
    choices = value.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        found = [to_message(c.get("message") or c.get("delta")) for c in choices]
        if all(m is not None for m in found):
            return [m for m in found if m is not None]
    generations = value.get("generations")  # LangChain LLMResult
    if isinstance(generations, list) and generations:
        first = generations[0][0] if isinstance(generations[0], list) else generations[0]
        if isinstance(first, dict):
            message = to_message(first.get("message")) if first.get("message") else None
            if message is None and isinstance(first.get("text"), str):
                message = Message(role="assistant", content=first["text"])
            return [message] if message else None
    single = to_message(value.get("message")) if isinstance(value.get("message"), dict) else None
    if single is None and "role" in value:
        single = to_message(value)
    return [single] if single else None
