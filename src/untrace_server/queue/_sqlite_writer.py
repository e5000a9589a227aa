"""Group commit for SQLite: one writer thread, one connection, one transaction per group.

Callers submit small functions of the connection. The thread takes every function
waiting (up to a bound), runs them in ONE transaction — each under its own savepoint, so
one failing operation fails alone — commits once (with ``synchronous=FULL`` that is one
fsync for the whole group), then resolves each caller's future. Concurrent callers
therefore share commits, and each returns only after its writes are on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue as threadqueue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from untrace_server.errors import QueueUnavailable

__all__ = ["GroupCommitWriter"]

T = TypeVar("T")

MAX_GROUP = 512  # operations per transaction

_Op = tuple[Callable[[sqlite3.Connection], Any], Future[Any]]


class GroupCommitWriter:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        name: str = "untrace-sqlite-writer",
        after_commit: Callable[[sqlite3.Connection, int], None] | None = None,
    ) -> None:
        self._connect = connect
        self._name = name
        self._after_commit = after_commit  # (connection, commits so far), on the thread
        self._ops: threadqueue.SimpleQueue[_Op | None] = threadqueue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def start(self) -> None:
        if self._thread is not None:
            return
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=self._name, daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)

    async def close(self) -> None:
        if self._thread is None or self._closed:
            return
        self._closed = True
        self._ops.put(None)
        await asyncio.to_thread(self._thread.join)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None or self._closed:
            raise QueueUnavailable("queue is not running")
        fut: Future[T] = Future()
        self._ops.put((fn, fut))
        return await asyncio.wrap_future(fut)

    def _run(self, ready: Future[None]) -> None:
        try:
            conn = self._connect()
        except Exception as exc:
            ready.set_exception(QueueUnavailable(f"cannot open the queue: {exc}"))
            return
        ready.set_result(None)
        commits = 0
        stop = False
        while not stop:
            first = self._ops.get()
            if first is None:
                break
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    item = self._ops.get_nowait()
                except threadqueue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._run_group(conn, group)
            commits += 1
            if self._after_commit is not None:
                self._after_commit(conn, commits)
        conn.close()

    def _run_group(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        results: list[tuple[Future[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, fut in group:
                conn.execute("SAVEPOINT op")
                try:
                    value = fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((fut, False, exc))
                else:
                    conn.execute("RELEASE op")
                    results.append((fut, True, value))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = QueueUnavailable(f"queue write failed: {exc}")
            for _, fut in group:
                fut.set_exception(error)
            return
        for fut, ok, value in results:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
