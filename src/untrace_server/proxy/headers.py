"""Which headers cross the proxy, and the trace metadata carried by ``X-Untrace-*``.

Request: everything the client sent goes upstream except hop-by-hop headers, ``Host``,
``Content-Length`` (recomputed) and every ``X-Untrace-*`` header. The provider key
(``Authorization`` / ``x-api-key``) goes upstream and nowhere else.

Response: everything the upstream sent comes back except hop-by-hop headers and the
ones the ASGI server writes itself (``Date``, ``Server``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TraceHeaders", "request_headers", "response_headers", "with_identity_encoding"]

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {b"host", b"content-length", b"expect"}
_NOT_RELAYED = _HOP_BY_HOP | {b"date", b"server"}
_PREFIX = b"x-untrace-"
_METADATA_PREFIX = "metadata-"


@dataclass(slots=True)
class TraceHeaders:
    """What the ``X-Untrace-*`` headers of one request said."""

    key: str | None = None
    session_id: str | None = None
    parent_id: str | None = None
    application_id: str | None = None
    environment: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def set(self, name: str, value: str) -> None:
        """``name`` is the lower-case header name after ``x-untrace-``."""
        if name == "key":
            self.key = value
        elif name == "session-id":
            self.session_id = value
        elif name == "parent-id":
            self.parent_id = value
        elif name == "application-id":
            self.application_id = value
        elif name == "environment":
            self.environment = value
        elif name == "tags":
            for pair in value.split(","):
                k, sep, v = pair.partition("=")
                if sep and k.strip():
                    self.tags[k.strip()] = v.strip()
        elif name.startswith(_METADATA_PREFIX) and len(name) > len(_METADATA_PREFIX):
            self.metadata[name[len(_METADATA_PREFIX) :].replace("-", "_")] = value

    def trace_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = dict(self.metadata)
        if self.application_id:
            meta["applicationId"] = self.application_id
        if self.environment:
            meta["environment"] = self.environment
        if self.tags:
            meta["tags"] = dict(self.tags)
        return meta


def request_headers(raw: list[tuple[bytes, bytes]]) -> tuple[list[tuple[str, str]], TraceHeaders]:
    """Split the ASGI request headers into those forwarded upstream and the Untrace ones."""
    forward: list[tuple[str, str]] = []
    untrace = TraceHeaders()
    for name, value in raw:
        if name.startswith(_PREFIX):
            untrace.set(name[len(_PREFIX) :].decode("latin-1"), value.decode("latin-1"))
        elif name not in _NOT_FORWARDED:
            forward.append((name.decode("latin-1"), value.decode("latin-1")))
    return forward, untrace


def with_identity_encoding(forward: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``forward`` asking the upstream for an uncompressed body."""
    kept = [(k, v) for k, v in forward if k.lower() != "accept-encoding"]
    kept.append(("accept-encoding", "identity"))
    return kept


def response_headers(raw: Any, *, drop_length: bool = False) -> list[tuple[bytes, bytes]]:
    """The upstream's headers (a multidict of raw bytes pairs) as ASGI headers to relay."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in raw:
        lower = name.lower()
        if lower in _NOT_RELAYED or (drop_length and lower == b"content-length"):
            continue
        out.append((lower, value))
    return out
