"""``instrument()`` / ``uninstrument()``: patch the openai and anthropic SDKs (whichever
are installed) so every call becomes a trace.

Patching is by class attribute, so clients created before or after ``instrument()``
are both traced; ``uninstrument()`` puts the original methods back. Three shapes of
method are patched:

- ``create`` / ``parse`` (``sync`` / ``async``): the call itself; a stream it returns
  is hooked.
- ``stream`` (``manager``): anthropic's ``messages.stream()`` helper posts by itself
  when its context manager is entered; the request it will make is wrapped instead.

The openai ``chat.completions.stream()`` and ``responses.stream()`` helpers call
``create``, so they are traced through it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from . import _anthropic, _openai, _responses
from ._call import LLMCall, Provider

if TYPE_CHECKING:
    from .._client import Untrace

__all__ = ["instrument", "uninstrument"]


class Target(NamedTuple):
    module: str
    cls: str
    method: str
    shape: Literal["sync", "async", "manager"]
    provider: Provider


_OPENAI_CHAT = _openai.OpenAIProvider()
_OPENAI_RESPONSES = _responses.ResponsesProvider()
_ANTHROPIC = _anthropic.AnthropicProvider()

_PROVIDERS: dict[str, tuple[Target, ...]] = {
    "openai": (
        Target("openai.resources.chat.completions", "Completions", "create", "sync", _OPENAI_CHAT),
        Target(
            "openai.resources.chat.completions", "AsyncCompletions", "create", "async", _OPENAI_CHAT
        ),
        Target("openai.resources.chat.completions", "Completions", "parse", "sync", _OPENAI_CHAT),
        Target(
            "openai.resources.chat.completions", "AsyncCompletions", "parse", "async", _OPENAI_CHAT
        ),
        Target("openai.resources.responses", "Responses", "create", "sync", _OPENAI_RESPONSES),
        Target(
            "openai.resources.responses", "AsyncResponses", "create", "async", _OPENAI_RESPONSES
        ),
        Target("openai.resources.responses", "Responses", "parse", "sync", _OPENAI_RESPONSES),
        Target("openai.resources.responses", "AsyncResponses", "parse", "async", _OPENAI_RESPONSES),
    ),
    "anthropic": (
        Target("anthropic.resources.messages", "Messages", "create", "sync", _ANTHROPIC),
        Target("anthropic.resources.messages", "AsyncMessages", "create", "async", _ANTHROPIC),
        Target("anthropic.resources.messages", "Messages", "stream", "manager", _ANTHROPIC),
        Target("anthropic.resources.messages", "AsyncMessages", "stream", "manager", _ANTHROPIC),
    ),
}

_lock = threading.Lock()
# (class, method name) -> original function
_patched: dict[tuple[type, str], Any] = {}
# base URLs of servers that refused what ``prepare`` added: asked as the caller asks
_refused: set[str] = set()


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


def _origin(resource: Any) -> str:
    try:
        return str(resource._client.base_url)
    except Exception:
        return ""


def _begin(
    client: Untrace | None, provider: Provider, resource: Any, kwargs: dict[str, Any]
) -> tuple[LLMCall | None, str]:
    call = _start(client, provider, kwargs)
    origin = ""
    if call is not None and call.hiding:
        origin = _origin(resource)
        if origin in _refused:
            call.unprepare(kwargs)
    return call, origin


def _rejected_change(call: LLMCall | None, exc: BaseException) -> bool:
    """The server refused what ``prepare`` added (a server without ``stream_options``):
    the call is made again exactly as the caller asked."""
    if call is None or not call.hiding:
        return False
    try:
        return getattr(exc, "status_code", None) in (400, 422) and "stream_options" in str(exc)
    except Exception:
        return False


def _wrap(original: Any, provider: Provider, client: Untrace | None, is_async: bool) -> Any:
    if is_async:

        @functools.wraps(original)
        async def async_create(self: Any, *args: Any, **kwargs: Any) -> Any:
            call, origin = _begin(client, provider, self, kwargs)
            retry = False
            try:
                try:
                    result = await original(self, *args, **(call.kwargs if call else kwargs))
                except Exception as exc:
                    if not _rejected_change(call, exc):
                        raise
                    retry = True
                if retry and call is not None:
                    _refused.add(origin)
                    call.unprepare(kwargs)
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
            call, origin = _begin(client, provider, self, kwargs)
            retry = False
            try:
                try:
                    result = original(self, *args, **(call.kwargs if call else kwargs))
                except Exception as exc:
                    if not _rejected_change(call, exc):
                        raise
                    retry = True
                if retry and call is not None:
                    _refused.add(origin)
                    call.unprepare(kwargs)
                    result = original(self, *args, **kwargs)
            except BaseException as exc:
                if call is not None:
                    call.fail(exc)
                raise
            return result if call is None else call.finish(result)

        wrapper = create
    wrapper.__untrace_original__ = original  # type: ignore[attr-defined]
    return wrapper


def _hook_manager(
    manager: Any, provider: Provider, client: Untrace | None, kwargs: dict[str, Any]
) -> None:
    """Wrap the request a stream manager makes when entered (a callable for the sync
    manager, an awaitable for the async one), so the call is traced from then."""
    attr = next((a for a in vars(manager) if a.endswith("__api_request")), None)
    if attr is None:
        return
    request = getattr(manager, attr)

    def begin() -> LLMCall | None:
        call = _start(client, provider, kwargs)
        if call is not None:
            call.unprepare(kwargs)  # the request is already built: nothing to hide
        return call

    if inspect.isawaitable(request):

        async def traced_async() -> Any:
            call = begin()
            try:
                result = await request
            except BaseException as exc:
                if call is not None:
                    call.fail(exc)
                raise
            return result if call is None else call.finish(result)

        setattr(manager, attr, traced_async())
    elif callable(request):

        def traced() -> Any:
            call = begin()
            try:
                result = request()
            except BaseException as exc:
                if call is not None:
                    call.fail(exc)
                raise
            return result if call is None else call.finish(result)

        setattr(manager, attr, traced)


def _wrap_manager(original: Any, provider: Provider, client: Untrace | None) -> Any:
    @functools.wraps(original)
    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        manager = original(self, *args, **kwargs)
        try:
            if _resolve(client) is not None:
                _hook_manager(manager, provider, client, kwargs)
        except Exception:
            pass
        return manager

    stream.__untrace_original__ = original  # type: ignore[attr-defined]
    return stream


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
            patched_any = False
            for target in _PROVIDERS[name]:
                try:
                    cls = getattr(importlib.import_module(target.module), target.cls)
                except (ImportError, AttributeError):
                    continue
                if not hasattr(cls, target.method):
                    continue
                key = (cls, target.method)
                original = _patched.get(key, getattr(cls, target.method))
                if target.shape == "manager":
                    wrapper = _wrap_manager(original, target.provider, client)
                else:
                    wrapper = _wrap(original, target.provider, client, target.shape == "async")
                setattr(cls, target.method, wrapper)
                _patched[key] = original
                patched_any = True
            if patched_any:
                done.append(name)
    return done


def uninstrument() -> None:
    """Put back every method ``instrument()`` replaced."""
    with _lock:
        _refused.clear()
        for (cls, method), original in _patched.items():
            setattr(cls, method, original)
        _patched.clear()
