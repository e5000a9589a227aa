"""The Trace: one captured LLM call (or chain/tool/agent step), as it travels through Untrace.

Wire format is JSON, camelCase at the top level and in ``metadata`` (DESIGN §6); the
seed's snake_case names stay inside ``usage``, ``metrics`` and ``parameters``. Times are
Unix epoch milliseconds.

``decode_trace`` / ``decode_batch`` validate with msgspec; ``encode`` produces bytes;
``to_builtins`` produces plain dicts (for transformers and JSONPath).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
import uuid_utils

__all__ = [
    "MAX_ID_LENGTH",
    "Message",
    "Request",
    "Response",
    "Trace",
    "TraceError",
    "TraceMetrics",
    "Usage",
    "derived_uuid",
    "encode",
    "from_builtins",
    "new_id",
    "now_ms",
    "to_builtins",
]

MAX_ID_LENGTH = 128
KINDS = ("llm", "chain", "tool", "retrieval", "embedding", "agent")

_ID_NAMESPACE = uuid.UUID("6f1c3b2e-8f53-4d8a-9a53-7e1d0c2b9a41")


class Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: Any = None  # str, or a list of content parts (text, image, tool_result, ...)
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class Usage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int | None = None


class Request(msgspec.Struct, omit_defaults=True):
    messages: list[Message] | None = None
    prompt: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None


class Response(msgspec.Struct, omit_defaults=True):
    content: str | None = None
    messages: list[Message] | None = None
    usage: Usage | None = None
    finish_reason: str | None = None


class TraceMetrics(msgspec.Struct, omit_defaults=True):
    latency_ms: float | None = None
    time_to_first_token_ms: float | None = None
    tokens_per_second: float | None = None
    estimated_cost: float | None = None


class TraceError(msgspec.Struct, omit_defaults=True):
    type: str
    message: str
    stack: str | None = None


class Trace(msgspec.Struct, rename="camel", omit_defaults=True):
    """One trace. ``metadata`` holds customerId, applicationId, environment, version,
    tags (string → string) and any free keys."""

    start_time: int
    end_time: int
    id: str = ""
    parent_id: str | None = None
    session_id: str | None = None
    provider: str | None = None
    model: str | None = None
    name: str | None = None
    kind: str = "llm"
    request: Request = msgspec.field(default_factory=Request)
    response: Response = msgspec.field(default_factory=Response)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    metrics: TraceMetrics = msgspec.field(default_factory=TraceMetrics)
    error: TraceError | None = None

    @property
    def customer_id(self) -> str | None:
        value = self.metadata.get("customerId")
        return value if isinstance(value, str) else None


def check_trace(trace: Trace) -> list[tuple[str, str]]:
    """Checks beyond types: returns (field, problem) pairs; empty when the trace is valid."""
    problems: list[tuple[str, str]] = []
    if len(trace.id) > MAX_ID_LENGTH:
        problems.append(("id", f"longer than {MAX_ID_LENGTH} characters"))
    for name in ("parent_id", "session_id"):
        value = getattr(trace, name)
        if value is not None and len(value) > MAX_ID_LENGTH:
            problems.append((_camel(name), f"longer than {MAX_ID_LENGTH} characters"))
    if trace.kind not in KINDS:
        problems.append(("kind", f"must be one of {', '.join(KINDS)}"))
    if trace.start_time < 0:
        problems.append(("startTime", "must be a Unix time in milliseconds, not negative"))
    if trace.end_time < trace.start_time:
        problems.append(("endTime", "is before startTime"))
    tags = trace.metadata.get("tags")
    if tags is not None and (
        not isinstance(tags, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        problems.append(("metadata.tags", "must be an object of string values"))
    return problems


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_encoder = msgspec.json.Encoder()
_trace_decoder = msgspec.json.Decoder(Trace)


def encode(trace: Trace) -> bytes:
    return _encoder.encode(trace)


def decode(data: bytes) -> Trace:
    """Decode a trace this process (or another Untrace node) encoded."""
    return _trace_decoder.decode(data)


def to_builtins(trace: Trace) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.to_builtins(trace)
    return result


def from_builtins(data: dict[str, Any]) -> Trace:
    return msgspec.convert(data, Trace)


def new_id() -> str:
    """A fresh, time-ordered trace id (UUIDv7)."""
    return str(uuid_utils.uuid7())


def derived_uuid(*parts: str) -> uuid.UUID:
    """A deterministic UUIDv5 from a trace id (and qualifiers): the same input gives the
    same id on every node and every redelivery, so destinations can dedupe."""
    return uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts))


def now_ms() -> int:
    return time.time_ns() // 1_000_000
