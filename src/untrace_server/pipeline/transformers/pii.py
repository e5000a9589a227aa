"""``pii_redaction``: finds personal data and secrets in a trace's text and replaces them.

Replacement is ``[REDACTED:EMAIL]`` (``mode: label``), or ``[EMAIL:<16 hex>]`` with
``mode: hash`` — an HMAC-SHA256 under ``key``, so the same address gives the same token
in every trace and joins still work, while nobody without the key can reverse it.

Scope: message contents (every part), tool calls and their arguments, the prompt, the
response; plus any JSONPaths in ``fields`` (e.g. ``$.metadata.userEmail``).

Detectors live in ``pii_detectors``; each is gated by a cheap substring test and its
regexes are linear (no nested unbounded repeats), so the cost is a few passes over the text.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from untrace_server.errors import ConfigError
from untrace_server.pipeline.transformers.base import (
    CONTENT_PATHS,
    content_locations,
    map_strings,
    parse_paths,
)
from untrace_server.pipeline.transformers.pii_detectors import (
    DETECTORS,
    Detector,
    candidate_windows,
)

__all__ = ["PiiRedactor", "find_pii"]


def find_pii(text: str, detectors: tuple[Detector, ...] = DETECTORS) -> list[tuple[int, int, str]]:
    """(start, end, label) of every finding, earlier detectors winning overlaps."""
    spans: list[tuple[int, int, int, str]] = []
    windows: list[tuple[int, str]] | None = None
    for rank, det in enumerate(detectors):
        if det.numeric:
            if windows is None:
                windows = candidate_windows(text)
            chunks = windows
        elif det.gate(text):
            chunks = [(0, text)]
        else:
            continue
        for offset, chunk in chunks:
            for m in det.regex.finditer(chunk):
                start, end = m.span(det.group)
                if det.validate is None or det.validate(chunk[start:end]):
                    spans.append((offset + start, rank, offset + end, det.label))
    if not spans:
        return []
    spans.sort()
    found: list[tuple[int, int, str]] = []
    last = 0
    for start, _rank, end, label in spans:
        if start >= last:
            found.append((start, end, label))
            last = end
    return found


class PiiRedactor:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

        mode: Literal["label", "hash"] = "label"
        key: str | None = Field(default=None, min_length=8)
        detectors: list[str] | None = None
        fields: list[str] = Field(default_factory=list)
        include_content: bool = Field(default=True, alias="includeContent")

        @model_validator(mode="after")
        def _key_for_hash(self) -> PiiRedactor.Config:
            if self.mode == "hash" and not self.key:
                raise ValueError("mode 'hash' needs a 'key' (at least 8 characters)")
            return self

    def __init__(self, config: Config) -> None:
        names = {d.name for d in DETECTORS}
        wanted = set(config.detectors) if config.detectors is not None else names
        unknown = wanted - names
        if unknown:
            raise ConfigError(
                f"unknown PII detector(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(names))}"
            )
        self.detectors = tuple(d for d in DETECTORS if d.name in wanted)
        texts = (list(CONTENT_PATHS) if config.include_content else []) + config.fields
        self.paths = parse_paths(texts)
        self.key = config.key.encode() if config.key else None

    def replacement(self, label: str, value: str) -> str:
        if self.key is None:
            return f"[REDACTED:{label}]"
        mac = hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()[:16]
        return f"[{label}:{mac}]"

    def redact(self, text: str) -> str:
        found = find_pii(text, self.detectors)
        if not found:
            return text
        out: list[str] = []
        last = 0
        for start, end, label in found:
            out.append(text[last:start])
            out.append(self.replacement(label, text[start:end]))
            last = end
        out.append(text[last:])
        return "".join(out)

    def transform(self, data: dict[str, Any]) -> dict[str, Any]:
        for parent, key in content_locations(data, self.paths):
            parent[key] = map_strings(parent[key], self.redact)
        return data
