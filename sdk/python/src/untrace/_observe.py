"""``@observe``: a span around every call of a function, coroutine function, generator
or async generator.

For generators the span covers the whole iteration, and it is the current span only
while the generator's own code runs (between ``next`` calls the caller's span is
current again), so nesting stays right however the caller interleaves iteration.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._context import current_span
from ._span import Span

if TYPE_CHECKING:
    from ._client import Untrace

__all__ = ["observe"]

_F = TypeVar("_F", bound=Callable[..., Any])
_MAX_ITEMS = 1000


@overload
def observe(func: _F, /) -> _F: ...
@overload
def observe(
    func: None = None,
    /,
    *,
    name: str | None = None,
    kind: str = "chain",
    capture_input: bool = True,
    capture_output: bool = True,
    client: Untrace | None = None,
    **span_kwargs: Any,
) -> Callable[[_F], _F]: ...
def observe(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    kind: str = "chain",
    capture_input: bool = True,
    capture_output: bool = True,
    client: Untrace | None = None,
    **span_kwargs: Any,
) -> Any:
    """Trace each call of the decorated function as a span.

    ``@observe`` or ``@observe(name=..., kind="tool", capture_input=False, ...)``; other
    keyword arguments go to the span (``session_id``, ``metadata``, ``tags``, ...).
    The arguments become ``request.parameters``, the return value ``response.content``.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        span_name = name or getattr(fn, "__qualname__", None) or repr(fn)
        try:
            signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            signature = None

        def open_span(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span:
            sp = Span(span_name, kind=kind, client=client, **span_kwargs)
            if capture_input:
                with contextlib.suppress(Exception):
                    sp.request["parameters"] = _arguments(signature, args, kwargs)
            return sp

        def record(sp: Span, value: Any) -> None:
            if capture_output and value is not None:
                with contextlib.suppress(Exception):
                    sp.set_output(value)

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
                sp = open_span(args, kwargs)
                items: list[Any] = []
                agen = fn(*args, **kwargs)
                try:
                    step: Callable[[], Any] = functools.partial(agen.asend, None)
                    while True:
                        token = current_span.set(sp)
                        try:
                            item = await step()
                        finally:
                            current_span.reset(token)
                        if len(items) < _MAX_ITEMS:
                            items.append(item)
                        try:
                            sent = yield item
                        except GeneratorExit:
                            await agen.aclose()
                            raise
                        except BaseException as exc:
                            step = functools.partial(agen.athrow, exc)
                        else:
                            step = functools.partial(agen.asend, sent)
                except StopAsyncIteration:
                    pass
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    sp.set_error(exc)
                    raise
                finally:
                    record(sp, _joined(items))
                    sp.end()

            return agen_wrapper

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                sp = open_span(args, kwargs)
                items: list[Any] = []
                gen = fn(*args, **kwargs)
                result: Any = None
                try:
                    step: Callable[[], Any] = functools.partial(gen.send, None)
                    while True:
                        token = current_span.set(sp)
                        try:
                            item = step()
                        finally:
                            current_span.reset(token)
                        if len(items) < _MAX_ITEMS:
                            items.append(item)
                        try:
                            sent = yield item
                        except GeneratorExit:
                            gen.close()
                            raise
                        except BaseException as exc:
                            step = functools.partial(gen.throw, exc)
                        else:
                            step = functools.partial(gen.send, sent)
                except StopIteration as stop:
                    result = stop.value
                    return result
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    sp.set_error(exc)
                    raise
                finally:
                    record(sp, result if result is not None else _joined(items))
                    sp.end()

            return gen_wrapper

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with open_span(args, kwargs) as sp:
                    value = await fn(*args, **kwargs)
                    record(sp, value)
                    return value

            return async_wrapper

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            with open_span(args, kwargs) as sp:
                value = fn(*args, **kwargs)
                record(sp, value)
                return value

        return sync_wrapper

    if func is not None:
        return decorate(func)
    return decorate


def _arguments(
    signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    if signature is None:
        return {"args": list(args), "kwargs": dict(kwargs)}
    bound = signature.bind_partial(*args, **kwargs)
    out = dict(bound.arguments)
    for skip in ("self", "cls"):
        out.pop(skip, None)
    return out


def _joined(items: list[Any]) -> Any:
    if not items:
        return None
    if all(isinstance(i, str) for i in items):
        return "".join(items)
    return items
