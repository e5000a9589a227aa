"""Span attributes for a Trace, in two flavours:

- ``genai``: the current OpenTelemetry GenAI semantic conventions (``gen_ai.provider.name``,
  ``gen_ai.input.messages`` as JSON in the parts format, ``gen_ai.usage.*``, …);
- ``openinference``: Arize's OpenInference conventions (``openinference.span.kind``,
  flattened ``llm.input_messages.<i>.message.*``, ``llm.token_count.*``, ``input.value``),
  what Phoenix reads most faithfully;
- ``mlflow``: ``genai`` plus the MLflow span attributes its server would otherwise guess
  (``mlflow.spanType`` for every kind; ``mlflow.spanInputs`` / ``mlflow.spanOutputs`` as
  plain text for prompt-in, text-out spans). MLflow derives the rest (model, provider,
  token usage, chat messages) from the GenAI attributes itself.

Both carry ``session.id``, ``user.id``, the Untrace id and free metadata.
"""

from __future__ import annotations

import json
from typing import Any

from untrace_server.destinations._view import (
    dumps,
    free_metadata,
    input_messages,
    output_messages,
    output_text,
    tag_list,
    tags,
    user_id,
)
from untrace_server.model import Trace

__all__ = [
    "FLAVOURS",
    "genai_attributes",
    "mlflow_attributes",
    "openinference_attributes",
    "operation_name",
]

_OPERATIONS = {
    "embedding": "embeddings",
    "retrieval": "retrieval",
    "tool": "execute_tool",
    "agent": "invoke_agent",
    "chain": "invoke_workflow",
}
_GENAI_PARAMS = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "top_p": "top_p",
    "top_k": "top_k",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "seed": "seed",
    "stop": "stop_sequences",
    "n": "choice.count",
}
_OI_KINDS = {
    "llm": "LLM",
    "chain": "CHAIN",
    "tool": "TOOL",
    "retrieval": "RETRIEVER",
    "embedding": "EMBEDDING",
    "agent": "AGENT",
}

# Untrace kind → MLflow ``SpanType`` (mlflow/entities/span.py). MLflow maps
# ``gen_ai.operation.name`` itself but has no type for ``retrieval`` or ``invoke_workflow``.
_MLFLOW_TYPES = {
    "embedding": "EMBEDDING",
    "retrieval": "RETRIEVER",
    "tool": "TOOL",
    "agent": "AGENT",
    "chain": "CHAIN",
}


def operation_name(trace: Trace) -> str:
    if trace.kind == "llm":
        return "chat" if trace.request.messages else "text_completion"
    return _OPERATIONS.get(trace.kind, "chat")


def _common(trace: Trace) -> dict[str, Any]:
    attrs: dict[str, Any] = {"untrace.trace.id": trace.id}
    if trace.session_id:
        attrs["session.id"] = trace.session_id
    if user := user_id(trace):
        attrs["user.id"] = user
    for key, value in free_metadata(trace).items():
        attrs[f"untrace.metadata.{key}"] = value if _scalar(value) else dumps(value)
    for key, value in tags(trace).items():
        attrs[f"untrace.tags.{key}"] = value
    return attrs


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _parts(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style message in the GenAI ``{role, parts}`` shape."""
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if message.get("role") == "tool" and message.get("tool_call_id"):
        parts.append(
            {"type": "tool_call_response", "id": message["tool_call_id"], "response": content}
        )
    elif isinstance(content, str):
        parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for item in content:
            if isinstance(item, dict) and item.get("type") == "text":
                parts.append({"type": "text", "content": item.get("text", "")})
            elif isinstance(item, dict):
                parts.append({**item, "type": str(item.get("type", "unknown"))})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name", call.get("name")),
                "arguments": _arguments(function.get("arguments", call.get("arguments"))),
            }
        )
    result: dict[str, Any] = {"role": message.get("role", "user"), "parts": parts}
    if message.get("name"):
        result["name"] = message["name"]
    return result


def genai_attributes(trace: Trace) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.operation.name": operation_name(trace)}
    if trace.provider:
        attrs["gen_ai.provider.name"] = trace.provider
    if trace.model:
        attrs["gen_ai.request.model"] = trace.model
        attrs["gen_ai.response.model"] = trace.model
    for key, name in _GENAI_PARAMS.items():
        value = trace.request.parameters.get(key)
        if key == "stop" and isinstance(value, str):
            value = [value]
        if value is not None and (_scalar(value) or isinstance(value, list)):
            attrs[f"gen_ai.request.{name}"] = value
    if usage := trace.response.usage:
        attrs["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        attrs["gen_ai.usage.output_tokens"] = usage.completion_tokens
        if usage.cached_tokens is not None:
            attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
    if trace.response.finish_reason:
        attrs["gen_ai.response.finish_reasons"] = [trace.response.finish_reason]
    if trace.session_id:
        attrs["gen_ai.conversation.id"] = trace.session_id
    if ttft := trace.metrics.time_to_first_token_ms:
        attrs["gen_ai.response.time_to_first_chunk"] = ttft / 1000
    messages = input_messages(trace)
    system = [m for m in messages if m.get("role") == "system"]
    if system:
        attrs["gen_ai.system_instructions"] = dumps([p for m in system for p in _parts(m)["parts"]])
    if rest := [_parts(m) for m in messages if m.get("role") != "system"]:
        attrs["gen_ai.input.messages"] = dumps(rest)
    if outputs := output_messages(trace):
        out = [_parts(m) for m in outputs]
        if trace.response.finish_reason:
            for message in out:
                message["finish_reason"] = trace.response.finish_reason
        attrs["gen_ai.output.messages"] = dumps(out)
    if trace.request.tools:
        attrs["gen_ai.tool.definitions"] = dumps(trace.request.tools)
    if trace.error:
        attrs["error.type"] = trace.error.type
    return {**attrs, **_common(trace)}


def _flatten_message(prefix: str, message: dict[str, Any], attrs: dict[str, Any]) -> None:
    attrs[f"{prefix}.message.role"] = message.get("role", "user")
    content = message.get("content")
    if isinstance(content, str):
        attrs[f"{prefix}.message.content"] = content
    elif isinstance(content, list):
        for j, item in enumerate(content):
            base = f"{prefix}.message.contents.{j}.message_content"
            if isinstance(item, dict) and item.get("type") == "text":
                attrs[f"{base}.type"] = "text"
                attrs[f"{base}.text"] = item.get("text", "")
            else:
                attrs[f"{base}.type"] = (
                    str(item.get("type", "unknown")) if isinstance(item, dict) else "text"
                )
                attrs[f"{base}.text"] = dumps(item)
    if message.get("name"):
        attrs[f"{prefix}.message.name"] = message["name"]
    if message.get("tool_call_id"):
        attrs[f"{prefix}.message.tool_call_id"] = message["tool_call_id"]
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        base = f"{prefix}.message.tool_calls.{j}.tool_call"
        if call.get("id"):
            attrs[f"{base}.id"] = call["id"]
        attrs[f"{base}.function.name"] = function.get("name", call.get("name", ""))
        arguments = function.get("arguments", call.get("arguments", ""))
        attrs[f"{base}.function.arguments"] = (
            arguments if isinstance(arguments, str) else dumps(arguments)
        )


def openinference_attributes(trace: Trace) -> dict[str, Any]:
    attrs: dict[str, Any] = {"openinference.span.kind": _OI_KINDS.get(trace.kind, "UNKNOWN")}
    if trace.model:
        attrs["llm.model_name"] = trace.model
    if trace.provider:
        attrs["llm.provider"] = trace.provider
        attrs["llm.system"] = trace.provider
    if trace.request.parameters:
        attrs["llm.invocation_parameters"] = dumps(trace.request.parameters)
    messages = input_messages(trace)
    for i, message in enumerate(messages):
        _flatten_message(f"llm.input_messages.{i}", message, attrs)
    for i, message in enumerate(output_messages(trace)):
        _flatten_message(f"llm.output_messages.{i}", message, attrs)
    for i, tool in enumerate(trace.request.tools or []):
        attrs[f"llm.tools.{i}.tool.json_schema"] = dumps(tool)
    if usage := trace.response.usage:
        attrs["llm.token_count.prompt"] = usage.prompt_tokens
        attrs["llm.token_count.completion"] = usage.completion_tokens
        attrs["llm.token_count.total"] = usage.total_tokens or (
            usage.prompt_tokens + usage.completion_tokens
        )
        if usage.cached_tokens is not None:
            attrs["llm.token_count.prompt_details.cache_read"] = usage.cached_tokens
    if (cost := trace.metrics.estimated_cost) is not None:
        attrs["llm.cost.total"] = cost
    if trace.request.prompt is not None and not trace.request.messages:
        attrs["input.value"], attrs["input.mime_type"] = trace.request.prompt, "text/plain"
    elif messages:
        attrs["input.value"] = dumps({"messages": messages, **trace.request.parameters})
        attrs["input.mime_type"] = "application/json"
    if (text := output_text(trace)) is not None:
        attrs["output.value"], attrs["output.mime_type"] = text, "text/plain"
    if metadata := free_metadata(trace):
        attrs["metadata"] = dumps(metadata)
    if labels := tag_list(trace):
        attrs["tag.tags"] = labels
    return {**attrs, **_common(trace)}


def mlflow_attributes(trace: Trace) -> dict[str, Any]:
    """GenAI attributes plus ``mlflow.spanType`` and, for a plain prompt, plain-text
    ``mlflow.spanInputs`` / ``mlflow.spanOutputs`` (what MLflow's trace list shows as
    request and response; chat spans keep MLflow's own rendering of the GenAI messages)."""
    attrs = genai_attributes(trace)
    if trace.kind == "llm":
        attrs["mlflow.spanType"] = "CHAT_MODEL" if trace.request.messages else "LLM"
    else:
        attrs["mlflow.spanType"] = _MLFLOW_TYPES.get(trace.kind, "UNKNOWN")
    if trace.request.prompt is not None and not trace.request.messages:
        attrs["mlflow.spanInputs"] = trace.request.prompt
        calls = any(m.tool_calls for m in trace.response.messages or ())
        if (text := output_text(trace)) is not None and not calls:
            attrs["mlflow.spanOutputs"] = text
    return attrs


FLAVOURS = {
    "genai": genai_attributes,
    "openinference": openinference_attributes,
    "mlflow": mlflow_attributes,
}
