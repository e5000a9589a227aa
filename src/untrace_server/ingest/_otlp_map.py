"""One OTLP span → one Trace.

Ids: ``id`` is the 16-hex span id, ``parentId`` the parent's 16-hex span id, the OTel
trace id goes to ``metadata.otelTraceId`` and, when the root span is known (it is this
span, or it is in the same export, or an earlier export named it), its span id goes to
``metadata.rootId``. Span ids are random 64-bit values, unique in practice; an OTLP
destination sends them out unchanged.

Conventions read, current names before deprecated ones: OTel GenAI (``gen_ai.*``),
OpenInference (``openinference.span.kind``, ``llm.*``, ``input.value``), Traceloop /
OpenLLMetry (``traceloop.*``, ``llm.usage.*``), LangSmith (``langsmith.*``) and Langfuse
(``langfuse.*``). See docs/receivers.md for the full table.
"""

from __future__ import annotations

from typing import Any

from untrace_server.ingest._content import as_text, loads
from untrace_server.ingest._otlp_decode import SpanData
from untrace_server.ingest._otlp_messages import conversation
from untrace_server.model import Request, Response, Trace, TraceError, TraceMetrics, Usage

__all__ = ["span_to_trace"]

_LANGFUSE_KINDS = {
    "generation": "llm",
    "agent": "agent",
    "tool": "tool",
    "chain": "chain",
    "retriever": "retrieval",
    "embedding": "embedding",
}
_OI_KINDS = {
    "LLM": "llm",
    "TOOL": "tool",
    "RETRIEVER": "retrieval",
    "RERANKER": "retrieval",
    "EMBEDDING": "embedding",
    "AGENT": "agent",
}
_TRACELOOP_KINDS = {"agent": "agent", "tool": "tool"}
_LANGSMITH_KINDS = {
    "llm": "llm",
    "tool": "tool",
    "retriever": "retrieval",
    "embedding": "embedding",
}
_OPERATIONS = {
    "chat": "llm",
    "text_completion": "llm",
    "completion": "llm",
    "generate_content": "llm",
    "generate": "llm",
    "embeddings": "embedding",
    "retrieval": "retrieval",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "invoke_workflow": "chain",
}
_PARAMS = tuple(  # (attribute, parameter)
    ("gen_ai.request." + name, {"stop_sequences": "stop", "choice.count": "n"}.get(name, name))
    for name in (
        *("temperature", "max_tokens", "top_p", "top_k", "frequency_penalty"),
        *("presence_penalty", "seed", "stop_sequences", "choice.count"),
    )
)
_META_PREFIXES = (
    "langfuse.trace.metadata.",
    "langfuse.observation.metadata.",
    "langsmith.metadata.",
    "traceloop.association.properties.",
)
_META_HEADS = frozenset(p[:4] for p in _META_PREFIXES)  # a cheap test before startswith
_TAG_KEYS = ("langfuse.trace.tags", "tag.tags", "langsmith.span.tags")


def _first(attrs: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _first_of(a: dict[str, Any], r: dict[str, Any], *keys: str) -> Any:
    """``_first`` over the span's attributes laid over the resource's."""
    for key in keys:
        value = a.get(key)
        if value is None:
            value = r.get(key)
        if value is not None and value != "":
            return value
    return None


def _kind(a: dict[str, Any]) -> str:
    if (v := a.get("langfuse.observation.type")) is not None:
        return _LANGFUSE_KINDS.get(str(v).lower(), "chain")
    if (v := a.get("openinference.span.kind")) is not None:
        return _OI_KINDS.get(str(v).upper(), "chain")
    if (v := a.get("langsmith.span.kind")) is not None:
        return _LANGSMITH_KINDS.get(str(v).lower(), "chain")
    if (v := a.get("gen_ai.operation.name")) is not None:
        return _OPERATIONS.get(str(v).lower(), "llm")
    if (v := a.get("llm.request.type")) is not None:  # OpenLLMetry
        return "embedding" if str(v) == "embedding" else "llm"
    if (v := a.get("traceloop.span.kind")) is not None:
        return _TRACELOOP_KINDS.get(str(v), "chain")
    if "gen_ai.request.model" in a or "llm.model_name" in a or "gen_ai.system" in a:
        return "llm"
    return "chain"


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _usage(a: dict[str, Any]) -> Usage | None:
    details = a.get("langfuse.observation.usage_details")
    details = loads(details) if details is not None else None
    if not isinstance(details, dict):
        details = {}
    prompt = _int(
        _first(
            a,
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.token_count.prompt",
            "llm.usage.prompt_tokens",
        )
        or details.get("input")
    )
    completion = _int(
        _first(
            a,
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
            "llm.usage.completion_tokens",
        )
        or details.get("output")
    )
    total = _int(
        _first(a, "gen_ai.usage.total_tokens", "llm.token_count.total", "llm.usage.total_tokens")
        or details.get("total")
    )
    if prompt is None and completion is None and total is None:
        return None
    cached = _int(
        _first(
            a,
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "llm.token_count.prompt_details.cache_read",
        )
    )
    prompt, completion = prompt or 0, completion or 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total or prompt + completion,
        cached_tokens=cached,
    )


def _parameters(a: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (raw := a.get("llm.invocation_parameters")) is not None:
        params = loads(raw)
        out = dict(params) if isinstance(params, dict) else {}
        out.pop("messages", None)
    for key, name in _PARAMS:
        value = a.get(key)
        if value is not None:
            out[name] = value
    return out


def _tags(a: dict[str, Any]) -> dict[str, str]:
    found: list[Any] = []
    if a.keys().isdisjoint(_TAG_KEYS):
        return {}
    for key in _TAG_KEYS:
        value = loads(a.get(key))
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",")]
        if isinstance(value, list):
            found.extend(value)
    return {str(t): "" for t in found if t not in (None, "")}


def _metadata(span: SpanData, a: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"otelTraceId": span.trace_id}
    if (raw := a.get("metadata")) is not None and isinstance(oi := loads(raw), dict):
        meta.update(oi)
    for key, value in a.items():
        if key[:4] in _META_HEADS and key.startswith(_META_PREFIXES):
            prefix = next(p for p in _META_PREFIXES if key.startswith(p))
            meta[key[len(prefix) :]] = loads(value)
    if env := _first_of(
        a, r, "langfuse.environment", "deployment.environment.name", "deployment.environment"
    ):
        meta["environment"] = str(env)
    if app := r.get("service.name"):
        meta["applicationId"] = str(app)
    if version := _first_of(a, r, "langfuse.release", "langfuse.version", "service.version"):
        meta["version"] = str(version)
    if user := _first(
        a, "langfuse.user.id", "user.id", "enduser.id", "traceloop.association.properties.user_id"
    ):
        meta["userId"] = str(user)
    if tags := _tags(a):
        meta["tags"] = tags
    if span.scope:
        meta["otelScope"] = span.scope
    return meta


def _error(span: SpanData, a: dict[str, Any]) -> TraceError | None:
    if span.status_code != 2 and not a.get("error.type"):
        return None
    exception = next((e[2] for e in span.events if e[0] == "exception"), {})
    return TraceError(
        type=str(exception.get("exception.type") or a.get("error.type") or "error"),
        message=str(span.status_message or exception.get("exception.message") or "error"),
        stack=exception.get("exception.stacktrace"),
    )


def span_to_trace(span: SpanData, root_id: str | None = None) -> Trace:
    a = span.attrs
    kind = _kind(a)
    in_msgs, in_text, out_msgs, out_text = conversation(a, span.events)
    finish = a.get("gen_ai.response.finish_reasons") or a.get("gen_ai.completion.0.finish_reason")
    if isinstance(finish, list):
        finish = finish[0] if finish else None
    start_ms = span.start_ns // 1_000_000
    end_ms = max(span.end_ns // 1_000_000, start_ms)
    ttft = _first(a, "gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token")
    cost = _first(a, "llm.cost.total", "gen_ai.usage.cost")
    provider = _first(
        a,
        "gen_ai.provider.name",
        "gen_ai.system",
        "llm.provider",
        "llm.system",
        "langsmith.metadata.ls_provider",
    )
    metadata = _metadata(span, a, span.resource)
    if root_id:
        metadata["rootId"] = root_id
    return Trace(
        id=span.span_id,
        parent_id=span.parent_id or None,
        session_id=as_text(
            _first(
                a,
                "langfuse.session.id",
                "session.id",
                "gen_ai.conversation.id",
                "langsmith.metadata.session_id",
                "langsmith.metadata.thread_id",
                "traceloop.association.properties.session_id",
            )
        ),
        start_time=start_ms,
        end_time=end_ms,
        provider=str(provider).lower() if provider else None,
        model=as_text(
            _first(
                a,
                "langfuse.observation.model.name",
                "gen_ai.response.model",
                "gen_ai.request.model",
                "llm.response.model",
                "llm.model_name",
                "llm.request.model",
                "langsmith.metadata.ls_model_name",
            )
        ),
        name=span.name or None,
        kind=kind,
        request=Request(messages=in_msgs, prompt=in_text, parameters=_parameters(a)),
        response=Response(
            messages=out_msgs,
            content=out_text,
            usage=_usage(a),
            finish_reason=str(finish) if finish else None,
        ),
        metadata=metadata,
        metrics=TraceMetrics(
            latency_ms=(span.end_ns - span.start_ns) / 1e6
            if span.end_ns >= span.start_ns
            else None,
            time_to_first_token_ms=float(ttft) * 1000 if isinstance(ttft, int | float) else None,
            estimated_cost=float(cost) if isinstance(cost, int | float) else None,
        ),
        error=_error(span, a),
    )
