"""Spans: a timed unit of work that becomes one trace when it ends.

``with span("retrieve", kind="retrieval") as s:`` (or ``async with``) makes ``s`` the
current span for the block: spans, ``@observe`` calls and instrumented LLM calls inside
it get ``parentId = s.id`` and inherit its ``sessionId``. An exception leaving the
block is recorded as the span's error and re-raised untouched.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._context import current_span
from ._ids import new_id

if TYPE_CHECKING:
    from ._client import Untrace

__all__ = ["Span", "span"]

_MAX_STACK = 8000


def _error_of(exc: BaseException) -> dict[str, Any]:
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "stack": stack[-_MAX_STACK:],
    }


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    from ._transport import encode_trace

    try:
        return encode_trace(value).decode()
    except Exception:
        return repr(value)


class Span:
    """One unit of work. Create it with ``untrace.span(...)`` or ``client.span(...)``.

    Keyword arguments: ``kind`` (llm, chain, tool, retrieval, embedding, agent; default
    chain), ``session_id``, ``parent_id`` (default: the current span), ``input``,
    ``model``, ``provider``, ``parameters``, ``metadata``, ``tags``, ``id``.
    """

    __slots__ = (
        "_client",
        "_ended",
        "_start_ns",
        "_token",
        "error",
        "id",
        "kind",
        "metadata",
        "model",
        "name",
        "parent_id",
        "provider",
        "request",
        "response",
        "session_id",
        "start_time",
    )

    def __init__(
        self,
        name: str,
        *,
        kind: str = "chain",
        session_id: str | None = None,
        parent_id: str | None = None,
        input: Any = None,
        model: str | None = None,
        provider: str | None = None,
        parameters: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        id: str | None = None,
        client: Untrace | None = None,
    ) -> None:
        parent = current_span.get()
        self.name = name
        self.kind = kind
        self.id = id or new_id()
        self.parent_id: str | None = parent_id or (parent.id if parent is not None else None)
        self.session_id: str | None = session_id or (
            parent.session_id if parent is not None else None
        )
        self.model = model
        self.provider = provider
        self.request: dict[str, Any] = {}
        self.response: dict[str, Any] = {}
        self.metadata: dict[str, Any] = dict(metadata or {})
        if tags:
            self.metadata["tags"] = {str(k): str(v) for k, v in tags.items()}
        if parameters:
            self.request["parameters"] = dict(parameters)
        if input is not None:
            self.set_input(input)
        self.error: dict[str, Any] | None = None
        self._client = client
        self._token: Token[Span | None] | None = None
        self._ended = False
        self.start_time = time.time_ns() // 1_000_000
        self._start_ns = time.perf_counter_ns()

    # -- recording -------------------------------------------------------------------

    def set_input(self, value: Any) -> None:
        """A string becomes ``request.prompt``, a list of messages ``request.messages``,
        a dict ``request.parameters``; anything else is stored as text."""
        if isinstance(value, str):
            self.request["prompt"] = value
        elif isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
            self.request["messages"] = list(value)
        elif isinstance(value, dict):
            self.request.setdefault("parameters", {}).update(value)
        else:
            self.request["prompt"] = _to_text(value)

    def set_output(self, value: Any) -> None:
        """A string becomes ``response.content``, a list of messages
        ``response.messages``; anything else is stored as JSON text in ``content``."""
        if (
            isinstance(value, list)
            and value
            and all(isinstance(m, dict) and "role" in m for m in value)
        ):
            self.response["messages"] = list(value)
        else:
            self.response["content"] = _to_text(value)

    def set_usage(
        self,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        total_tokens: int | None = None,
        cached_tokens: int | None = None,
    ) -> None:
        usage: dict[str, int] = {
            "prompt_tokens": int(prompt_tokens),
            "completion_tokens": int(completion_tokens),
            "total_tokens": int(
                total_tokens if total_tokens is not None else prompt_tokens + completion_tokens
            ),
        }
        if cached_tokens is not None:
            usage["cached_tokens"] = int(cached_tokens)
        self.response["usage"] = usage

    def set_metadata(self, **values: Any) -> None:
        """Merge keys into ``metadata``; ``tags=`` merges into the tags."""
        tags = values.pop("tags", None)
        self.metadata.update(values)
        if tags:
            merged = dict(self.metadata.get("tags") or {})
            merged.update({str(k): str(v) for k, v in tags.items()})
            self.metadata["tags"] = merged

    def set_error(self, exc: BaseException) -> None:
        self.error = _error_of(exc)

    # -- lifecycle -------------------------------------------------------------------

    def end(self) -> str:
        """End the span and queue its trace (once); returns the trace id."""
        if self._ended:
            return self.id
        self._ended = True
        try:
            client = self._client
            if client is None:
                from ._client import get_client

                client = get_client()
            if client is not None:
                client.trace(self.to_event())
        except Exception:
            pass
        return self.id

    def to_event(self) -> dict[str, Any]:
        elapsed_ms = (time.perf_counter_ns() - self._start_ns) / 1e6
        event: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "startTime": self.start_time,
            "endTime": max(self.start_time, time.time_ns() // 1_000_000),
            "request": self.request,
            "response": self.response,
            "metadata": self.metadata,
            "metrics": {"latency_ms": round(elapsed_ms, 3)},
        }
        if self.parent_id is not None:
            event["parentId"] = self.parent_id
        if self.session_id is not None:
            event["sessionId"] = self.session_id
        if self.model is not None:
            event["model"] = self.model
        if self.provider is not None:
            event["provider"] = self.provider
        if self.error is not None:
            event["error"] = self.error
        return event

    def __enter__(self) -> Span:
        self._token = current_span.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            # ValueError: exited in another context (e.g. another task)
            with contextlib.suppress(ValueError):
                current_span.reset(self._token)
            self._token = None
        if exc is not None and not isinstance(exc, GeneratorExit):
            self.set_error(exc)
        self.end()

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<Span {self.name!r} id={self.id} parent={self.parent_id}>"


def span(name: str, **kwargs: Any) -> Span:
    """A span on the default client (``untrace.init``); use as ``with`` or ``async with``."""
    return Span(name, **kwargs)
