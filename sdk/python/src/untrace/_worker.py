"""The background worker: one daemon thread per client (per process) that takes traces
off the queue, batches them (count, bytes, age), sends, and retries with backoff.

Every trace that leaves the queue ends as sent or as dropped with a reason; ``done``
advances past it either way, which is what ``flush`` waits for. Backoff sleeps on the
stop event, so ``shutdown`` cuts a retry short at its deadline.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from ._config import Config
from ._queue import TraceQueue
from ._transport import Outcome, Result, Sender, encode_trace

__all__ = ["BatchWorker"]

logger = logging.getLogger("untrace")

_KINDS = frozenset(("llm", "chain", "tool", "retrieval", "embedding", "agent"))


class BatchWorker:
    def __init__(
        self,
        queue: TraceQueue,
        config: Config,
        make_sender: Callable[[], Sender],
        stats: Counter[str],
    ) -> None:
        self._queue = queue
        self._config = config
        self._make_sender = make_sender
        self._stats = stats
        self._defaults = config.default_metadata()
        self._progress = threading.Condition()
        self.done = 0  # traces (by sequence) that have been sent or dropped
        self._stop = threading.Event()
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------

    def ensure_started(self) -> None:
        if self._thread is None:
            thread = threading.Thread(target=self._run, name="untrace-worker", daemon=True)
            self._thread = thread
            thread.start()

    def reset_after_fork(self) -> None:
        self._progress = threading.Condition()
        self._stop = threading.Event()
        self._deadline = None
        self._thread = None
        self.done = 0

    def wait_done(self, target: int, timeout: float | None) -> bool:
        with self._progress:
            return self._progress.wait_for(lambda: self.done >= target, timeout)

    def stop(self, timeout: float) -> bool:
        """Send what is queued until ``timeout``, then stop; True when nothing had to be
        abandoned for lack of time."""
        thread = self._thread
        target = self._queue.put_count
        abandoned = self._stats["dropped.shutdown"]
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self._queue.wakeup.set()
        if thread is None or not thread.is_alive():
            return len(self._queue) == 0
        thread.join(timeout + 0.5)
        return self.done >= target and self._stats["dropped.shutdown"] == abandoned

    # -- the loop --------------------------------------------------------------------

    def _run(self) -> None:
        sender = None
        try:
            sender = self._make_sender()
            while True:
                if not self._stop.is_set():
                    self._queue.wakeup.wait(self._config.flush_interval)
                    self._queue.wakeup.clear()
                self._drain(sender)
                if self._stop.is_set() and (len(self._queue) == 0 or self._past_deadline()):
                    break
        except Exception:  # never let the worker die silently with traces queued
            logger.exception("untrace worker crashed; traces will be dropped")
        finally:
            left, upto = self._queue.take(len(self._queue) + self._queue.maxsize)
            if left:
                self._drop("shutdown", len(left))
            self._advance(upto)
            if sender is not None:
                sender.close()

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _drain(self, sender: Sender) -> None:
        cfg = self._config
        while len(self._queue) and not self._past_deadline():
            traces, upto = self._queue.take(cfg.max_batch_size)
            batch: list[bytes] = []
            size = 0
            for trace in traces:
                encoded = self._encode(trace)
                if encoded is None:
                    continue
                if batch and size + len(encoded) > cfg.max_batch_bytes:
                    self._deliver(sender, batch)
                    batch, size = [], 0
                batch.append(encoded)
                size += len(encoded) + 1
            if batch:
                self._deliver(sender, batch)
            self._advance(upto)

    def _advance(self, upto: int) -> None:
        with self._progress:
            self.done = max(self.done, upto)
            self._progress.notify_all()

    def _encode(self, trace: dict[str, Any]) -> bytes | None:
        try:
            if self._defaults:
                meta = trace.get("metadata")
                merged = dict(self._defaults)
                if isinstance(meta, dict):
                    tags = meta.get("tags")
                    if isinstance(tags, dict) and "tags" in merged:
                        meta = {**meta, "tags": {**merged["tags"], **tags}}  # type: ignore[dict-item]
                    merged.update(meta)
                trace["metadata"] = merged
            if trace.get("kind", "llm") not in _KINDS:
                self._drop("invalid", 1)
                return None
            return encode_trace(trace)
        except Exception:
            self._drop("unserializable", 1)
            return None

    def _deliver(self, sender: Sender, batch: list[bytes]) -> None:
        cfg = self._config
        attempt = 0
        while True:
            remaining = None if self._deadline is None else self._deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self._drop("shutdown", len(batch))
                return
            try:
                result = sender.send(batch, remaining)
            except Exception as exc:  # a bug or an odd transport: count, don't crash
                result = Result(Outcome.DROP, "error", detail=repr(exc))
            if result.outcome is Outcome.SENT:
                self._stats["sent"] += len(batch)
                self._stats["batches"] += 1
                return
            if result.outcome is Outcome.SPLIT:
                half = len(batch) // 2
                self._deliver(sender, batch[:half])
                self._deliver(sender, batch[half:])
                return
            if result.outcome is Outcome.DROP:
                self._drop(result.reason, len(batch), result.detail)
                return
            attempt += 1
            if attempt > cfg.max_retries:
                self._drop("retries_exhausted", len(batch), result.reason)
                return
            self._stats["retries"] += 1
            delay = min(cfg.max_backoff, cfg.initial_backoff * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)
            if result.retry_after is not None:
                delay = min(max(result.retry_after, 0.0), cfg.max_backoff)
            if self._deadline is not None:
                delay = min(delay, max(0.0, self._deadline - time.monotonic()))
            if self._stop.is_set():
                time.sleep(delay)  # shutting down: the delay is already capped by the deadline
            else:
                self._stop.wait(delay)  # shutdown cuts the backoff short

    def _drop(self, reason: str, n: int, detail: str = "") -> None:
        self._stats["dropped"] += n
        self._stats[f"dropped.{reason}"] += n
        if reason not in self._warned:
            self._warned.add(reason)
            logger.warning("untrace: dropped %d trace(s): %s %s", n, reason, detail)
