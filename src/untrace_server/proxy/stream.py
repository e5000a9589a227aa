"""Asking an OpenAI stream for usage without the client noticing.

When a client streams without ``stream_options.include_usage``, the proxy asks for it
(``ask_for_usage``) so the trace carries the provider's token counts, then
``UsageStripper`` removes from the relayed bytes what that option added: the
``"usage":null`` member of every chunk, and the final chunk whose ``choices`` is empty.
The client sees the stream it would have seen. The trace's side copy keeps the
upstream's bytes as they came.

The rewrite works on whole SSE events, so a chunk that ends mid-event is held back until
its event completes (upstreams write one event per chunk: in practice nothing waits).
``,"usage":null`` can only be a JSON member here: inside a JSON string the quotes would
be escaped.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["UsageStripper", "ask_for_usage"]

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_NULL_MEMBERS = (b',"usage":null', b', "usage": null', b',"usage": null')


def ask_for_usage(body: bytes) -> tuple[bytes, bool]:
    """The body to send upstream, and whether include_usage was added to it."""
    try:
        request: Any = _decode(body)
    except msgspec.DecodeError:
        return body, False
    if not isinstance(request, dict) or request.get("stream") is not True:
        return body, False
    options = request.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return body, False
    options = dict(options) if isinstance(options, dict) else {}
    options["include_usage"] = True
    request["stream_options"] = options
    return _encode(request), True


class UsageStripper:
    def __init__(self) -> None:
        self._pending = b""
        self._sep = b""

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to relay now for ``chunk`` (whole events only)."""
        data = self._pending + chunk if self._pending else chunk
        if not self._sep:
            self._sep = b"\r\n\r\n" if b"\r\n" in data else b"\n\n"
        cut = data.rfind(self._sep)
        if cut < 0:
            self._pending = data
            return b""
        cut += len(self._sep)
        self._pending = data[cut:]
        return self._rewrite(data[:cut])

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._rewrite(rest) if rest else b""

    def _rewrite(self, block: bytes) -> bytes:
        if b'"usage"' not in block:
            return block
        for member in _NULL_MEMBERS:
            block = block.replace(member, b"")
        if b'"usage"' not in block:
            return block
        events = block.split(self._sep)
        kept = [e for e in events if b'"usage"' not in e or not _usage_only(e)]
        return self._sep.join(kept)


def _usage_only(event: bytes) -> bool:
    """True for the chunk include_usage adds: ``choices`` empty, ``usage`` set."""
    for line in event.splitlines():
        if line.startswith(b"data:"):
            try:
                data = _decode(line[5:].strip())
            except msgspec.DecodeError:
                return False
            return isinstance(data, dict) and not data.get("choices") and bool(data.get("usage"))
    return False
