"""Fitting an oversized trace under the per-trace limit by cutting its longest strings,
rather than refusing it whole (the peers' "events over 1 MB are dropped" failure).

Strings anywhere under ``request``, ``response``, ``error`` and ``metadata`` (message
contents and their parts — base64 images are the usual culprit —, prompt, tool
arguments, free metadata) are cut to one common length, the longest first, each ending
with ``…[truncated N chars]``; ``metadata.truncatedFields`` lists the paths cut (as the
``truncate`` transformer does). Ids, times, the model and the customer are never cut.
A trace whose bulk is not in strings (a huge array of numbers) cannot be fitted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from untrace_server import model

__all__ = ["MIN_KEPT_CHARS", "fit"]

MIN_KEPT_CHARS = 256  # a cut string keeps at least this much
_SECTIONS = ("request", "response", "error", "metadata")
_NEVER = frozenset({"customerId", "truncatedFields"})
_MARK_BYTES = len("…[truncated 0000000 chars]".encode())


def _mark(cut: int) -> str:
    return f"…[truncated {cut} chars]"


def _leaves(value: Any, path: str) -> Iterator[tuple[Any, Any, str, str]]:
    """(container, key, path, text) of every string below ``value``."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        where = f"{path}.{key}" if isinstance(value, dict) else f"{path}[{key}]"
        if isinstance(item, str):
            yield value, key, where, item
        elif isinstance(item, dict | list):
            yield from _leaves(item, where)


def fit(trace: model.Trace, max_bytes: int) -> model.Trace | None:
    """``trace`` when its JSON is within ``max_bytes``; else a copy with its longest
    strings cut to fit; None when cutting every string to MIN_KEPT_CHARS is not enough."""
    size = len(model.encode(trace))
    if size <= max_bytes:
        return trace
    data = model.to_builtins(trace)
    leaves = [
        leaf
        for section in _SECTIONS
        if isinstance(data.get(section), dict | list)
        for leaf in _leaves(data[section], section)
        if not (section == "metadata" and leaf[2].split(".")[1].split("[")[0] in _NEVER)
    ]
    lengths = sorted((len(text.encode()) for *_, text in leaves), reverse=True)[:10_000]
    # the longest cap (in bytes) whose estimated size fits; verified by encoding below
    excess = size - max_bytes + 64 + 32 * min(len(lengths), 1000)  # list of paths, marks
    cap = _cap_for(lengths, excess)
    while cap is not None and cap >= MIN_KEPT_CHARS:
        cut = _cut(data, leaves, cap)
        fitted = model.from_builtins(cut)
        if len(model.encode(fitted)) <= max_bytes:
            return fitted
        cap //= 2
    return None


def _cap_for(lengths: list[int], excess: int) -> int | None:
    """The largest cap such that cutting every string longer than it down to it (plus
    a mark) saves at least ``excess`` bytes; None when even MIN_KEPT_CHARS does not."""

    def saved(cap: int) -> int:  # falls as the cap rises
        return sum(length - cap - _MARK_BYTES for length in lengths if length > cap)

    if not lengths or saved(MIN_KEPT_CHARS) < excess:
        return None
    low, high = MIN_KEPT_CHARS, lengths[0]  # saved(low) >= excess; find the largest such
    while low < high:
        mid = (low + high + 1) // 2
        if saved(mid) >= excess:
            low = mid
        else:
            high = mid - 1
    return low


def _cut(data: dict[str, Any], leaves: list[tuple[Any, Any, str, str]], cap: int) -> Any:
    """A copy of ``data`` whose strings longer than ``cap`` UTF-8 bytes are cut."""
    originals = {}
    paths = []
    for container, key, path, text in leaves:
        raw = text.encode()
        if len(raw) > cap:
            kept = raw[:cap].decode(errors="ignore")
            originals[id(container), key] = kept + _mark(len(text) - len(kept))
            paths.append(path)

    def copy(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: originals.get((id(value), k), copy(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [originals.get((id(value), i), copy(v)) for i, v in enumerate(value)]
        return value

    out: dict[str, Any] = copy(data)
    metadata = out.setdefault("metadata", {})
    metadata["truncatedFields"] = [*metadata.get("truncatedFields", []), *paths]
    return out
