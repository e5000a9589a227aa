"""One instrumented LLM call, provider-neutral: timing, the trace it becomes, and the
stream hook.

A provider module supplies a ``Provider``: how to read the request kwargs, a response,
and stream chunks. Everything here swallows its own errors — a tracing bug must never
change what the caller's LLM call returns or raises.
"""

from __future__ import annotations

import contextlib
import inspect
import time
import weakref
from collections.abc import AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from .._context import current_span
from .._ids import new_id

if TYPE_CHECKING:
    from .._client import Untrace
    from .._config import Config

__all__ = ["LLMCall", "Provider", "StreamState", "clean_params"]

# kwargs of ``create`` that are transport options, not model parameters
_NOT_PARAMS = frozenset(
    (
        "messages",
        "model",
        "tools",
        "stream",
        "system",
        "extra_headers",
        "extra_query",
        "extra_body",
        "timeout",
        "input",
        "instructions",
    )
)


def clean_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Model parameters from ``create`` kwargs, without the SDKs' NOT_GIVEN/omit sentinels."""
    return {
        k: v
        for k, v in kwargs.items()
        if k not in _NOT_PARAMS and type(v).__name__ not in ("NotGiven", "Omit")
    }


class StreamState(Protocol):
    model: str | None
    first_ns: int | None

    def add(self, chunk: Any) -> None: ...
    def response(self) -> dict[str, Any]: ...


class Provider(Protocol):
    #: ``provider`` of the trace; its ``name`` is ``f"{name}.{operation}"``
    name: str
    operation: str

    def request(self, kwargs: dict[str, Any]) -> dict[str, Any]: ...
    def response(self, result: Any) -> tuple[str | None, dict[str, Any]]: ...
    def stream_state(self) -> StreamState: ...

    def prepare(self, kwargs: dict[str, Any], config: Config) -> dict[str, Any] | None:
        """The kwargs to call with instead of ``kwargs`` (None: call unchanged). When
        they differ, the stream's chunks go through ``hide``."""

    def hide(self, chunk: Any) -> bool:
        """True for a chunk the caller would not have seen without ``prepare``'s change
        (it is recorded, not yielded); may also undo the change's trace on a chunk."""


class LLMCall:
    __slots__ = (
        "_done",
        "client",
        "hiding",
        "kwargs",
        "model",
        "parent_id",
        "provider",
        "request",
        "session_id",
        "start_ms",
        "t0",
    )

    def __init__(self, client: Untrace, provider: Provider, kwargs: dict[str, Any]) -> None:
        self.client = client
        self.provider = provider
        self.t0 = time.perf_counter_ns()
        self.start_ms = time.time_ns() // 1_000_000
        parent = current_span.get()
        self.parent_id = parent.id if parent is not None else None
        self.session_id = parent.session_id if parent is not None else None
        model = kwargs.get("model")
        self.model = model if isinstance(model, str) else None
        self.request = provider.request(kwargs)
        self._done = False
        #: what the call is made with: the caller's kwargs, or ``prepare``'s
        self.kwargs = kwargs
        self.hiding = False
        try:
            changed = provider.prepare(kwargs, client.config)
        except Exception:
            changed = None
        if changed is not None:
            self.kwargs = changed
            self.hiding = True

    def unprepare(self, original: dict[str, Any]) -> None:
        """The call is retried with the caller's own kwargs."""
        self.kwargs = original
        self.hiding = False

    def _send(
        self,
        response: dict[str, Any] | None,
        *,
        model: str | None = None,
        error: BaseException | None = None,
        first_ns: int | None = None,
    ) -> None:
        if self._done:
            return
        self._done = True
        end_ns = time.perf_counter_ns()
        latency = (end_ns - self.t0) / 1e6
        metrics: dict[str, float] = {"latency_ms": round(latency, 3)}
        if first_ns is not None:
            metrics["time_to_first_token_ms"] = round((first_ns - self.t0) / 1e6, 3)
        usage = (response or {}).get("usage")
        if usage and usage.get("completion_tokens"):
            gen_ns = end_ns - (first_ns if first_ns is not None else self.t0)
            if gen_ns > 0:
                metrics["tokens_per_second"] = round(usage["completion_tokens"] * 1e9 / gen_ns, 2)
        event: dict[str, Any] = {
            "id": new_id(),
            "parentId": self.parent_id,
            "startTime": self.start_ms,
            "endTime": max(self.start_ms, time.time_ns() // 1_000_000),
            "provider": self.provider.name,
            "model": model or self.model,
            "name": f"{self.provider.name}.{self.provider.operation}",
            "kind": "llm",
            "request": self.request,
            "response": response or {},
            "metrics": metrics,
        }
        if self.session_id is not None:
            event["sessionId"] = self.session_id
        if error is not None:
            event["error"] = {
                "type": type(error).__name__,
                "message": str(error) or type(error).__name__,
            }
            status = getattr(error, "status_code", None)
            if isinstance(status, int):
                event["metadata"] = {"http_status": status}
        self.client.trace(event)

    # -- outcomes --------------------------------------------------------------------

    def fail(self, error: BaseException) -> None:
        with contextlib.suppress(Exception):
            self._send(None, error=error)

    def finish(self, result: Any) -> Any:
        """Record a plain response, or hook a stream; always returns ``result``."""
        try:
            if hasattr(result, "_iterator") and hasattr(result, "response"):
                self._hook_stream(result)
            else:
                model, response = self.provider.response(result)
                self._send(response, model=model)
        except Exception:
            pass
        return result

    def _hook_stream(self, stream: Any) -> None:
        state = self.provider.stream_state()
        inner = stream._iterator
        response = stream.response
        # closed before the end — ``stream.close()``, or a ``.stream()`` helper closing
        # the HTTP response on exit — or dropped and collected: still one trace, with
        # what arrived so far. The SDK's own close at the end of the stream (the
        # generator is running then) is left to the generator, which knows the error.
        if hasattr(inner, "__anext__"):
            agen = self._traced_async(inner, state)
            stream._iterator = agen
            aclose = response.aclose

            async def response_aclose() -> None:
                try:
                    await aclose()
                finally:
                    if not agen.ag_running:
                        self._end_stream(state, None)

            response.aclose = response_aclose
        else:
            gen = self._traced(inner, state)
            stream._iterator = gen
            close = response.close

            def response_close() -> None:
                try:
                    close()
                finally:
                    if inspect.getgeneratorstate(gen) != inspect.GEN_RUNNING:
                        self._end_stream(state, None)

            response.close = response_close
        weakref.finalize(stream, self._end_stream, state, None)

    def _end_stream(self, state: StreamState, error: BaseException | None) -> None:
        with contextlib.suppress(Exception):
            self._send(state.response(), model=state.model, error=error, first_ns=state.first_ns)

    def _hidden(self, chunk: Any) -> bool:
        try:
            return self.provider.hide(chunk)
        except Exception:
            return False

    def _traced(self, inner: Iterator[Any], state: StreamState) -> Generator[Any, None, None]:
        error: BaseException | None = None
        hiding = self.hiding
        try:
            for chunk in inner:
                with contextlib.suppress(Exception):
                    state.add(chunk)
                if hiding and self._hidden(chunk):
                    continue
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._end_stream(state, error)

    async def _traced_async(self, inner: AsyncIterator[Any], state: StreamState) -> Any:
        error: BaseException | None = None
        hiding = self.hiding
        try:
            async for chunk in inner:
                with contextlib.suppress(Exception):
                    state.add(chunk)
                if hiding and self._hidden(chunk):
                    continue
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._end_stream(state, error)
