"""The client: ``trace()`` on the caller's thread, everything else on the worker.

``trace()`` copies the event, gives it an id and times, links it to the current span,
and appends it to a bounded queue — no I/O, no locks held for long, never raises.
One ``os.register_at_fork`` hook and one ``atexit`` hook serve every live client.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

import httpx

from ._config import Config, env_api_key, env_base_url
from ._context import current_span
from ._ids import new_id, now_ms
from ._queue import TraceQueue
from ._transport import Sender
from ._worker import BatchWorker

if TYPE_CHECKING:
    from ._span import Span

__all__ = ["Untrace", "flush", "get_client", "init", "shutdown", "trace"]

logger = logging.getLogger("untrace")

_F = TypeVar("_F", bound=Callable[..., Any])

_live: weakref.WeakSet[Untrace] = weakref.WeakSet()
_default: Untrace | None = None
_default_lock = threading.Lock()


class Untrace:
    """Queues traces and sends them in the background to an Untrace server.

    ``base_url`` is the server's root URL (traces go to ``{base_url}/api/v1/traces``).
    ``api_key`` and ``base_url`` default to ``UNTRACE_API_KEY`` / ``UNTRACE_BASE_URL``.
    Without an API key the client is disabled: every call is a cheap no-op.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        config: Config | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config or Config()
        self.base_url = (base_url or env_base_url()).rstrip("/")
        self._api_key = api_key or env_api_key()
        self._transport = transport
        self.enabled = self.config.enabled and bool(self._api_key)
        if self.config.enabled and not self._api_key:
            logger.warning("untrace: no API key (set UNTRACE_API_KEY); tracing is disabled")
        self._stats: Counter[str] = Counter()
        self._queue = TraceQueue(self.config.max_queue_size, self.config.max_batch_size)
        self._worker = BatchWorker(self._queue, self.config, self._make_sender, self._stats)
        self._closed = False
        _live.add(self)

    def _make_sender(self) -> Sender:
        return Sender(
            self.base_url,
            self._api_key or "",
            timeout=self.config.request_timeout,
            compress=self.config.gzip,
            transport=self._transport,
        )

    # -- the hot path ----------------------------------------------------------------

    def trace(self, event: Mapping[str, Any]) -> str:
        """Queue one trace (a dict in the wire format, camelCase) and return its id.

        Fills in ``id``, ``startTime``/``endTime`` (Unix ms), and ``parentId`` /
        ``sessionId`` from the current span when the event does not set them. Never
        blocks and never raises; when the queue is full the oldest trace is dropped.
        """
        if not self.enabled or self._closed:
            return ""
        try:
            item = dict(event)
            trace_id = item.get("id") or new_id()
            item["id"] = trace_id
            if "startTime" not in item:
                item["startTime"] = now_ms()
            if "endTime" not in item:
                item["endTime"] = item["startTime"]
            if "parentId" not in item:
                parent = current_span.get()
                if parent is not None:
                    item["parentId"] = parent.id
                    if "sessionId" not in item and parent.session_id is not None:
                        item["sessionId"] = parent.session_id
            self._queue.put(item)
            if self._worker._thread is None:
                self._worker.ensure_started()
            return str(trace_id)
        except Exception:
            self._stats["dropped"] += 1
            self._stats["dropped.error"] += 1
            return ""

    # -- spans -----------------------------------------------------------------------

    def span(self, name: str, **kwargs: Any) -> Span:
        """A span sent through this client; see ``untrace.span``."""
        from ._span import Span

        return Span(name, client=self, **kwargs)

    @overload
    def observe(self, func: _F, /) -> _F: ...
    @overload
    def observe(self, func: None = None, /, **kwargs: Any) -> Callable[[_F], _F]: ...
    def observe(self, func: _F | None = None, /, **kwargs: Any) -> Any:
        """``untrace.observe`` bound to this client."""
        from ._observe import observe

        decorate = observe(client=self, **kwargs)
        return decorate(func) if func is not None else decorate

    # -- lifecycle -------------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Send everything queued so far; True when it was sent (or dropped and counted)
        before ``timeout`` seconds."""
        if not self.enabled:
            return True
        try:
            target = self._queue.put_count
            if self._worker.done >= target:
                return True
            self._worker.ensure_started()
            self._queue.wakeup.set()
            return self._worker.wait_done(target, timeout)
        except Exception:
            return False

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout``, default ``config.shutdown_timeout``) and stop the
        worker. Idempotent; later ``trace()`` calls are ignored."""
        if self._closed:
            return True
        self._closed = True
        if not self.enabled:
            return True
        try:
            limit = self.config.shutdown_timeout if timeout is None else timeout
            return self._worker.stop(limit)
        except Exception:
            return False

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``sent``, ``batches``, ``retries``, ``queued``, ``dropped`` and one
        ``dropped.<reason>`` per reason (``queue_full``, ``rejected``, ``unauthorized``,
        ``retries_exhausted``, ``unserializable``, ``invalid``, ``shutdown``, ``error``)."""
        out = dict(self._stats)
        evicted = self._queue.evicted
        if evicted:
            out["dropped"] = out.get("dropped", 0) + evicted
            out["dropped.queue_full"] = evicted
        out["queued"] = len(self._queue)
        for key in ("sent", "dropped"):
            out.setdefault(key, 0)
        return out

    def _before_fork(self) -> None:
        self._queue.hold()

    def _after_fork_parent(self) -> None:
        self._queue.release()

    def _after_fork_child(self) -> None:
        self._queue.clear_after_fork()
        self._worker.reset_after_fork()
        self._stats.clear()

    def __repr__(self) -> str:
        return f"<Untrace base_url={self.base_url!r} enabled={self.enabled}>"


# -- module-level client ------------------------------------------------------------


def init(
    api_key: str | None = None,
    *,
    base_url: str | None = None,
    config: Config | None = None,
    **config_fields: Any,
) -> Untrace:
    """Create the default client used by ``untrace.trace``, ``span``, ``observe`` and
    ``instrument``. Keyword arguments other than those are ``Config`` fields."""
    global _default
    if config_fields:
        base = config or Config()
        from dataclasses import replace

        config = replace(base, **config_fields)
    client = Untrace(api_key, base_url=base_url, config=config)
    with _default_lock:
        old, _default = _default, client
    if old is not None:
        old.shutdown(timeout=old.config.shutdown_timeout)
    return client


def get_client() -> Untrace | None:
    """The default client, or None before ``init``."""
    return _default


def trace(event: Mapping[str, Any]) -> str:
    """``Untrace.trace`` on the default client ("" when there is none)."""
    client = _default
    return client.trace(event) if client is not None else ""


def flush(timeout: float | None = 10.0) -> bool:
    client = _default
    return client.flush(timeout) if client is not None else True


def shutdown(timeout: float | None = None) -> bool:
    client = _default
    return client.shutdown(timeout) if client is not None else True


# -- process hooks ------------------------------------------------------------------


def _before_fork() -> None:
    for client in list(_live):
        client._before_fork()


def _after_fork_parent() -> None:
    for client in list(_live):
        client._after_fork_parent()


def _after_fork_child() -> None:
    for client in list(_live):
        client._after_fork_child()


def _at_exit() -> None:
    for client in list(_live):
        if client.config.flush_at_exit:
            client.shutdown()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
)
atexit.register(_at_exit)
