"""A small ``multipart/form-data`` reader for LangSmith's ``/runs/multipart``.

The body is read (and decompressed) whole under the size limit first, so the streaming
parsers that read the socket directly do not fit; and the parts LangSmith sends are
JSON, a few per run. Returns ``(name, content_type, data)`` per part.
"""

from __future__ import annotations

from untrace_server.errors import InvalidPayload

__all__ = ["boundary_of", "parse_multipart"]


def boundary_of(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"')
    raise InvalidPayload("multipart Content-Type without a boundary", status=400)


def _name(disposition: str) -> str | None:
    for param in disposition.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "name":
            return value.strip('"')
    return None


def parse_multipart(body: bytes, boundary: str) -> list[tuple[str, str, bytes]]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise InvalidPayload("multipart body has no parts", status=400)
    parts: list[tuple[str, str, bytes]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise InvalidPayload("malformed multipart part", status=400)
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, colon, value = line.partition(":")
            if colon:
                headers[key.strip().lower()] = value.strip()
        name = _name(headers.get("content-disposition", ""))
        if name is None:
            raise InvalidPayload("multipart part without a name", status=400)
        if data.endswith(b"\r\n"):
            data = data[:-2]
        parts.append((name, headers.get("content-type", ""), data))
    return parts
