"""``file``: append traces as JSON Lines to a local file, fsynced once per batch."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import msgspec

from untrace_server.destinations.base import (
    BatchResult,
    DestinationConfig,
    DestinationContext,
    HealthStatus,
)
from untrace_server.errors import RetryableError
from untrace_server.model import Trace

__all__ = ["FileDestination"]


class FileConfig(DestinationConfig):
    path: str
    fsync: bool = True


_encoder = msgspec.json.Encoder()


class FileDestination:
    Config: ClassVar[type[DestinationConfig]] = FileConfig

    def __init__(self, config: FileConfig, context: DestinationContext) -> None:
        self.config = config
        self.context = context
        path = Path(config.path)
        self.path = path if path.is_absolute() else Path(context.data_dir) / path

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, data: bytes) -> None:
        with open(self.path, "ab") as fh:
            fh.write(data)
            fh.flush()
            if self.config.fsync:
                os.fsync(fh.fileno())

    async def send_batch(self, traces: Sequence[Trace]) -> BatchResult:
        data = b"".join(_encoder.encode(t) + b"\n" for t in traces)
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            raise RetryableError(f"cannot write {self.path}: {exc}") from exc
        return BatchResult(delivered=len(traces))

    async def health_check(self) -> HealthStatus:
        ok = os.access(self.path.parent, os.W_OK)
        return HealthStatus(healthy=ok, detail=str(self.path))

    async def shutdown(self) -> None:
        return None
