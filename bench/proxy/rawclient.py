"""A minimal HTTP/1.1 keep-alive client for the load generator: raw asyncio, a fraction
of aiohttp's CPU per request, so the generator (which shares core 1 with the mock)
stays out of the numbers as far as it can. Handles Content-Length and chunked bodies."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, float]] | None = None
        self.first_body_at = 0.0
        self.head_end = -1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.head_end < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head_end = end + 4
        if not self.first_body_at and len(self.buf) > self.head_end:
            self.first_body_at = time.perf_counter()
        head = bytes(self.buf[: self.head_end]).lower()
        at = head.find(b"content-length:")
        if at >= 0:
            length = int(head[at + 15 :].split(b"\r\n", 1)[0])
            done = len(self.buf) >= self.head_end + length
        else:
            done = self.buf.endswith(b"0\r\n\r\n")
        if done and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((int(head[9:12]), self.first_body_at))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))


class RawClient:
    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], list[_Conn]] = {}

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
        """(status, time of the first body byte); returns when the whole body is in."""
        parts = urlsplit(url)
        key = (parts.hostname or "127.0.0.1", parts.port or 80)
        pool = self.idle.setdefault(key, [])
        conn = pool.pop() if pool else None
        if conn is None or conn.transport is None or conn.transport.is_closing():
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_Conn, *key)
        lines = [f"POST {parts.path} HTTP/1.1", f"host: {key[0]}:{key[1]}",
                 f"content-length: {len(body)}"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in headers.items()]
        conn.buf.clear()
        conn.head_end = -1
        conn.first_body_at = 0.0
        conn.waiter = asyncio.get_running_loop().create_future()
        assert conn.transport is not None
        conn.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status, first = await conn.waiter
        pool.append(conn)
        return status, first

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                if conn.transport is not None:
                    conn.transport.close()
