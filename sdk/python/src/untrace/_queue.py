"""The bounded in-memory queue between the caller's thread and the worker.

``put`` never blocks: when the queue is full the oldest trace is evicted and counted.
Each trace carries a sequence number so ``flush`` can wait for "everything put before
now" without stopping producers.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

__all__ = ["TraceQueue"]


class TraceQueue:
    def __init__(self, maxsize: int, wake_at: int) -> None:
        self.maxsize = maxsize
        self.wake_at = wake_at
        self.wakeup = threading.Event()
        self._items: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self.put_count = 0
        self.evicted = 0

    def put(self, item: dict[str, Any]) -> None:
        with self._lock:
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.evicted += 1
            self._items.append(item)
            self.put_count += 1
            n = len(self._items)
        if n >= self.wake_at and not self.wakeup.is_set():
            self.wakeup.set()

    def take(self, n: int) -> tuple[list[dict[str, Any]], int]:
        """Remove up to ``n`` traces; also return how many traces were put so far, so the
        caller knows which sequence numbers the taken ones (and the evicted) cover."""
        with self._lock:
            k = min(n, len(self._items))
            items = [self._items.popleft() for _ in range(k)]
            return items, self.put_count - len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def clear_after_fork(self) -> None:
        """In a forked child: the parent owns (and sends) what was queued; start empty,
        with a fresh lock in case another thread held it at the moment of the fork."""
        self._lock = threading.Lock()
        self.wakeup = threading.Event()
        self._items.clear()
        self.put_count = 0
        self.evicted = 0

    def hold(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()
