"""LangSmith runs (post + patch, merged) → Traces.

``id`` is the run id, ``parentId`` the ``parent_run_id``, ``metadata.rootId`` the run's
``trace_id`` (the root run's id), so the tree forwards unchanged. Model and provider
come from ``extra.metadata.ls_model_name`` / ``ls_provider`` (what ``wrap_openai`` and
LangChain set) or the invocation parameters; tokens from ``usage_metadata`` (in
``extra.metadata`` or the outputs) or an OpenAI ``usage`` block.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from untrace_server.ingest._content import as_text, messages_from
from untrace_server.model import Request, Response, Trace, TraceError, TraceMetrics, Usage

__all__ = ["merge", "run_to_trace"]

_KINDS = {"llm": "llm", "tool": "tool", "retriever": "retrieval", "embedding": "embedding"}
_PARAM_SKIP = {"messages", "model", "stream", "_type", "prompts", "input", "stop_sequences"}
_META_SKIP = {"usage_metadata", "ls_invocation_params"}


def _ms(value: Any) -> int | None:
    if isinstance(value, int | float):
        return int(value if value > 1e11 else value * 1000)
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:  # LangSmith treats naive times as UTC
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def merge(post: dict[str, Any] | None, patch: dict[str, Any] | None) -> dict[str, Any]:
    run = dict(post or {})
    for key, value in (patch or {}).items():
        if key == "extra" and isinstance(value, dict) and isinstance(run.get("extra"), dict):
            extra = {**run["extra"], **value}
            meta = {**run["extra"].get("metadata", {}), **value.get("metadata", {})}
            run["extra"] = {**extra, "metadata": meta}
        elif value is not None:
            run[key] = value
    return run


def _usage(meta: dict[str, Any], outputs: Any) -> Usage | None:
    outputs = outputs if isinstance(outputs, dict) else {}
    found = meta.get("usage_metadata") or outputs.get("usage_metadata")
    if isinstance(found, dict):
        prompt = int(found.get("input_tokens") or 0)
        completion = int(found.get("output_tokens") or 0)
        details = found.get("input_token_details") or {}
        cached = details.get("cache_read") if isinstance(details, dict) else None
        return Usage(
            prompt,
            completion,
            int(found.get("total_tokens") or prompt + completion),
            cached_tokens=int(cached) if cached is not None else None,
        )
    usage = outputs.get("usage") or (outputs.get("llm_output") or {}).get("token_usage")
    if isinstance(usage, dict) and ("prompt_tokens" in usage or "completion_tokens" in usage):
        prompt, completion = (
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
        )
        return Usage(prompt, completion, int(usage.get("total_tokens") or prompt + completion))
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        (only,) = value.values()
        if isinstance(only, str):
            return only
    return as_text(value) if value not in (None, {}) else None


def _finish(outputs: Any) -> str | None:
    choices = outputs.get("choices") if isinstance(outputs, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        return str(reason) if reason else None
    return None


def run_to_trace(run: dict[str, Any], *, partial: bool = False, fallback_ms: int = 0) -> Trace:
    extra: dict[str, Any] = run["extra"] if isinstance(run.get("extra"), dict) else {}
    meta_in: dict[str, Any] = extra["metadata"] if isinstance(extra.get("metadata"), dict) else {}
    invocation = extra.get("invocation_params") or meta_in.get("ls_invocation_params") or {}
    inputs, outputs = run.get("inputs"), run.get("outputs")
    kind = _KINDS.get(str(run.get("run_type", "chain")), "chain")
    start = _ms(run.get("start_time")) or _ms(run.get("end_time")) or fallback_ms
    end = max(_ms(run.get("end_time")) or start, start)
    in_msgs = messages_from(inputs)
    out_msgs = messages_from(outputs)
    params: dict[str, Any] = {}
    if kind == "llm":
        source = inputs if isinstance(inputs, dict) else {}
        params = {k: v for k, v in {**source, **invocation}.items() if k not in _PARAM_SKIP}
    prompt = None
    if in_msgs is None:
        prompts = inputs.get("prompts") if isinstance(inputs, dict) else None
        prompt = prompts[0] if isinstance(prompts, list) and prompts else _text(inputs)
    metadata: dict[str, Any] = {k: v for k, v in meta_in.items() if k not in _META_SKIP}
    if run.get("trace_id"):
        metadata["rootId"] = str(run["trace_id"])
    if run.get("session_name"):
        metadata["langsmithProject"] = run["session_name"]
    if isinstance(run.get("tags"), list) and run["tags"]:
        metadata["tags"] = {str(t): "" for t in run["tags"]}
    if partial:
        metadata["partial"] = True
    model = (
        meta_in.get("ls_model_name")
        or invocation.get("model")
        or (inputs.get("model") if isinstance(inputs, dict) and kind == "llm" else None)
    )
    error = run.get("error")
    return Trace(
        id=str(run["id"]),
        parent_id=str(run["parent_run_id"]) if run.get("parent_run_id") else None,
        session_id=as_text(
            meta_in.get("session_id") or meta_in.get("thread_id") or meta_in.get("conversation_id")
        ),
        start_time=start,
        end_time=end,
        provider=as_text(meta_in.get("ls_provider")),
        model=as_text(model),
        name=as_text(run.get("name")),
        kind=kind,
        request=Request(messages=in_msgs, prompt=as_text(prompt), parameters=params),
        response=Response(
            messages=out_msgs,
            content=None if out_msgs else _text(outputs),
            usage=_usage(meta_in, outputs),
            finish_reason=_finish(outputs),
        ),
        metadata=metadata,
        metrics=TraceMetrics(latency_ms=float(end - start) if run.get("end_time") else None),
        error=TraceError(
            type="error", message=str(error).strip().splitlines()[-1][:1000], stack=str(error)
        )
        if error
        else None,
    )
