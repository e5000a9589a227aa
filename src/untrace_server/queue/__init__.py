"""Durable queues behind one protocol: SQLite (embedded default), Redis Streams or NATS
JetStream (a fleet), in-memory (tests)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

from untrace_server.config import Settings
from untrace_server.errors import ConfigError
from untrace_server.queue.base import Queue

__all__ = ["open_queue", "queue_from_settings"]


def open_queue(
    url: str, *, data_dir: Path, synchronous: str, budget_bytes: int, retention_s: float
) -> Queue:
    """Build the queue named by ``url``: ``sqlite://`` (default, in the data dir),
    ``sqlite:///path/queue.db``, ``redis://host:6379/0`` or
    ``nats://host:4222[,nats://host2:4222][?stream=untrace&replicas=3]`` (a fleet; also
    ``tls://``) or ``memory://``."""
    if url in ("", "sqlite://") or url.startswith("sqlite:///"):
        from untrace_server.queue.sqlite import SqliteQueue

        path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        return SqliteQueue(
            path if path is not None else data_dir / "queue.db",
            synchronous=synchronous,
            budget_bytes=budget_bytes,
            retention_s=retention_s,
        )
    if url.startswith(("redis://", "rediss://", "unix://")):
        import os
        import socket

        from untrace_server.queue.redis import RedisQueue

        return RedisQueue(
            url,
            consumer=f"{socket.gethostname()}-{os.getpid()}",
            retention_s=retention_s,
            budget_bytes=budget_bytes,
        )
    if url.startswith(("nats://", "tls://")):
        from untrace_server.queue.nats import NatsQueue

        servers, _, query = url.partition("?")
        params = dict(parse_qsl(query))
        unknown = set(params) - {"stream", "replicas"}
        if unknown or not params.get("replicas", "1").isdigit():
            raise ConfigError(f"queue URL {url!r}: the query takes stream= and replicas=N")
        return NatsQueue(
            servers,
            stream=params.get("stream", "untrace"),
            replicas=int(params.get("replicas", "1")),
            retention_s=retention_s,
            budget_bytes=budget_bytes,
        )
    if url == "memory://":
        from untrace_server.queue.memory import MemoryQueue

        return MemoryQueue(budget_bytes=budget_bytes, retention_s=retention_s)
    raise ConfigError(
        f"unsupported queue URL {url!r}: use sqlite://, redis://, nats:// or memory://"
    )


def queue_from_settings(settings: Settings) -> Queue:
    """The queue the settings name (not started)."""
    return open_queue(
        settings.queue.url,
        data_dir=settings.data_dir,
        synchronous=settings.queue.synchronous,
        budget_bytes=settings.queue.budget_bytes,
        retention_s=settings.queue.retention_days * 86400,
    )
