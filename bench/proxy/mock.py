"""A fast mock OpenAI upstream for the proxy benchmark: raw asyncio (uvloop), HTTP/1.1
keep-alive, one canned chat completion; with ``"stream":true`` a chunked SSE stream
whose first event goes out at once and the rest ``--gap-ms`` later (the usage chunk
only when the request asked for it). Run: ``python bench/proxy/mock.py --port 9001``."""

from __future__ import annotations

import argparse
import asyncio
import json

import uvloop

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the mock upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17},
    },
    separators=(",", ":"),
).encode()
PLAIN = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_1\r\n"
    b"content-length: " + str(len(COMPLETION)).encode() + b"\r\n\r\n" + COMPLETION
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _event(delta: dict, usage: bool, finish: str | None = None) -> bytes:
    data: dict = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
                  "model": "gpt-4o-mini",
                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    if usage:
        data["usage"] = None
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _stream(usage: bool) -> tuple[bytes, bytes]:
    first = _event({"role": "assistant", "content": ""}, usage)
    rest = b"".join(_event({"content": w}, usage) for w in ("Hello", " from", " mock", "."))
    rest += _event({}, usage, "stop")
    if usage:
        rest += b'data: {"id":"chatcmpl-bench","choices":[],"usage":{"prompt_tokens":11,'
        rest += b'"completion_tokens":4,"total_tokens":15}}\n\n'
    rest += b"data: [DONE]\n\n"
    return STREAM_HEAD + _chunk(first), _chunk(rest) + b"0\r\n\r\n"


STREAMS = {False: _stream(False), True: _stream(True)}


class MockProtocol(asyncio.Protocol):
    gap_s = 0.002

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            if b'"stream":true' in body.replace(b" ", b""):
                first, rest = STREAMS[b'"include_usage":true' in body.replace(b" ", b"")]
                self.transport.write(first)
                asyncio.get_running_loop().call_later(self.gap_s, self._write, rest)
            else:
                self.transport.write(PLAIN)

    def _write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--gap-ms", type=float, default=2.0)
    args = parser.parse_args()
    MockProtocol.gap_s = args.gap_ms / 1000
    uvloop.run(serve(args.port))
