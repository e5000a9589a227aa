"""``instrument()`` / ``uninstrument()``: patch the ``create`` methods of the openai and
anthropic SDKs (whichever are installed) so every call becomes a trace.

Patching is by class attribute, so clients created before or after ``instrument()``
are both traced; ``uninstrument()`` puts the original methods back.
"""

from __future__ import annotations

import functools
import importlib
import threading
from typing import TYPE_CHECKING, Any

from . import _anthropic, _openai
from ._call import LLMCall, Provider

if TYPE_CHECKING:
    from .._client import Untrace

__all__ = ["instrument", "uninstrument"]

_PROVIDERS: dict[str, tuple[Provider, tuple[tuple[str, str, str, bool], ...]]] = {
    "openai": (_openai.OpenAIProvider(), _openai.TARGETS),
    "anthropic": (_anthropic.AnthropicProvider(), _anthropic.TARGETS),
}

_lock = threading.Lock()
# (class, method name) -> original function
_patched: dict[tuple[type, str], Any] = {}


def _resolve(client: Untrace | None) -> Untrace | None:
    if client is not None:
        return client if client.enabled else None
    from .._client import get_client

    default = get_client()
    return default if default is not None and default.enabled else None


def _start(client: Untrace | None, provider: Provider, kwargs: dict[str, Any]) -> LLMCall | None:
    target = _resolve(client)
    if target is None:
        return None
    try:
        return LLMCall(target, provider, kwargs)
    except Exception:
        return None


def _wrap(original: Any, provider: Provider, client: Untrace | None, is_async: bool) -> Any:
    if is_async:

        @functools.wraps(original)
        async def async_create(self: Any, *args: Any, **kwargs: Any) -> Any:
            call = _start(client, provider, kwargs)
            try:
                result = await original(self, *args, **kwargs)
            except BaseException as exc:
                if call is not None:
                    call.fail(exc)
                raise
            return result if call is None else call.finish(result)

        wrapper = async_create
    else:

        @functools.wraps(original)
        def create(self: Any, *args: Any, **kwargs: Any) -> Any:
            call = _start(client, provider, kwargs)
            try:
                result = original(self, *args, **kwargs)
            except BaseException as exc:
                if call is not None:
                    call.fail(exc)
                raise
            return result if call is None else call.finish(result)

        wrapper = create
    wrapper.__untrace_original__ = original  # type: ignore[attr-defined]
    return wrapper


def instrument(
    client: Untrace | None = None, *, providers: tuple[str, ...] = ("openai", "anthropic")
) -> list[str]:
    """Trace every openai / anthropic call from now on; returns the providers patched
    (those installed). Traces go to ``client``, or to the default client at call time.
    Calling it again re-targets the patches; it never patches twice."""
    done: list[str] = []
    with _lock:
        for name in providers:
            if name not in _PROVIDERS:
                raise ValueError(f"unknown provider {name!r}; known: {', '.join(_PROVIDERS)}")
            provider, targets = _PROVIDERS[name]
            patched_any = False
            for module_name, class_name, method, is_async in targets:
                try:
                    cls = getattr(importlib.import_module(module_name), class_name)
                except (ImportError, AttributeError):
                    continue
                key = (cls, method)
                original = _patched.get(key, getattr(cls, method))
                setattr(cls, method, _wrap(original, provider, client, is_async))
                _patched[key] = original
                patched_any = True
            if patched_any:
                done.append(name)
    return done


def uninstrument() -> None:
    """Put back every method ``instrument()`` replaced."""
    with _lock:
        for (cls, method), original in _patched.items():
            setattr(cls, method, original)
        _patched.clear()
