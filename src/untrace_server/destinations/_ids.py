"""Platform ids derived deterministically from Untrace trace ids.

A redelivery of the same trace yields the same run id / span id / event id on every node,
so platforms that upsert by id see one record, not two. Ids that already have the
platform's shape (16 hex for an OTel span, 32 hex for an OTel trace) are kept, and a trace
that came in over OTLP carries its original trace id in ``metadata.otelTraceId``, so it goes
out with the trace and span ids it arrived with.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence

from untrace_server.model import Trace, derived_uuid

__all__ = ["Lineage", "lineage", "otel_trace_id", "root_id", "run_uuid", "span_id", "trace_id"]

_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
# Metadata key a receiver sets when it knows the root of a deeper tree (e.g. an OTLP
# trace id). Without it the root is found through parentId within the batch.
ROOT_KEY = "rootId"
# Metadata key the OTLP receivers set: the 32-hex trace id the span arrived with.
OTEL_TRACE_KEY = "otelTraceId"


def run_uuid(untrace_id: str) -> uuid.UUID:
    """UUIDv5 run / observation id (LangSmith, Langfuse legacy)."""
    return derived_uuid(untrace_id)


def _digest(kind: str, value: str, size: int) -> bytes:
    digest = hashlib.sha256(f"{kind}\x1f{value}".encode()).digest()[:size]
    return digest if any(digest) else b"\x01" * size  # all-zero ids are invalid in OTel


def span_id(untrace_id: str) -> bytes:
    """8-byte OTel span id."""
    if _HEX16.fullmatch(untrace_id) and int(untrace_id, 16):
        return bytes.fromhex(untrace_id)
    return _digest("span", untrace_id, 8)


def trace_id(root: str) -> bytes:
    """16-byte OTel trace id of the tree whose root is ``root``."""
    if _HEX32.fullmatch(root) and int(root, 16):
        return bytes.fromhex(root)
    if len(root) == 36:
        try:
            return uuid.UUID(root).bytes
        except ValueError:
            pass
    return _digest("trace", root, 16)


def otel_trace_id(trace: Trace) -> bytes | None:
    """``metadata.otelTraceId`` as 16 bytes when it is a valid (32-hex, non-zero) id."""
    value = trace.metadata.get(OTEL_TRACE_KEY)
    if isinstance(value, str) and _HEX32.fullmatch(value) and int(value, 16):
        return bytes.fromhex(value)
    return None


def root_id(trace: Trace, by_id: Mapping[str, Trace] | None = None) -> str:
    """The id of the root of ``trace``'s tree: ``metadata.rootId`` if given, else walk
    ``parentId`` through ``by_id`` (the batch) as far as it goes."""
    explicit = trace.metadata.get(ROOT_KEY)
    if isinstance(explicit, str) and explicit:
        return explicit
    current, seen = trace, {trace.id}
    while current.parent_id:
        parent = (by_id or {}).get(current.parent_id)
        if parent is None or parent.id in seen:
            return current.parent_id
        explicit = parent.metadata.get(ROOT_KEY)
        if isinstance(explicit, str) and explicit:
            return explicit
        seen.add(parent.id)
        current = parent
    return current.id


class Lineage:
    """Ancestry of every trace in a batch: root id and the chain of (id, start_time)
    from the root down to the trace (ancestors outside the batch appear with the child's
    start time, the best deterministic guess)."""

    def __init__(self, traces: Sequence[Trace]) -> None:
        self.by_id = {t.id: t for t in traces}

    def root(self, trace: Trace) -> str:
        return root_id(trace, self.by_id)

    def trace_id(self, trace: Trace) -> bytes:
        """The OTel trace id of ``trace``'s tree: the OTel trace id it arrived with
        (``metadata.otelTraceId`` of the trace, else of its nearest ancestor in the batch),
        else one derived from the root id. Spans of one OTel trace thus keep their trace id
        even when their root is in another batch or was never seen."""
        current: Trace | None = trace
        seen: set[str] = set()
        while current is not None and current.id not in seen:
            if (found := otel_trace_id(current)) is not None:
                return found
            seen.add(current.id)
            current = self.by_id.get(current.parent_id) if current.parent_id else None
        return trace_id(self.root(trace))

    def chain(self, trace: Trace) -> list[tuple[str, int]]:
        chain = [(trace.id, trace.start_time)]
        current, seen = trace, {trace.id}
        while current.parent_id and current.parent_id not in seen:
            seen.add(current.parent_id)
            parent = self.by_id.get(current.parent_id)
            if parent is None:
                root = self.root(trace)
                if root not in seen and root != current.parent_id:
                    chain.append((current.parent_id, current.start_time))
                    chain.append((root, current.start_time))
                else:
                    chain.append((current.parent_id, current.start_time))
                break
            chain.append((parent.id, parent.start_time))
            current = parent
        chain.reverse()
        return chain


def lineage(traces: Sequence[Trace]) -> Lineage:
    return Lineage(traces)
