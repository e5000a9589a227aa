"""Field transformers: ``drop_fields``, ``truncate``, ``hash_fields``, ``set_metadata``."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from untrace_server.errors import ConfigError
from untrace_server.pipeline.paths import locate
from untrace_server.pipeline.transformers.base import (
    CONTENT_PATHS,
    content_locations,
    map_strings,
    parse_paths,
)

__all__ = [
    "DropFieldsTransformer",
    "HashFieldsTransformer",
    "SetMetadataTransformer",
    "TruncateTransformer",
]

_REQUIRED = {"startTime", "endTime"}


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class DropFieldsTransformer:
    """Removes every field a JSONPath designates (list elements included)."""

    class Config(_Config):
        fields: list[str] = Field(min_length=1)

    def __init__(self, config: Config) -> None:
        self.paths = parse_paths(config.fields)
        for path in self.paths:
            if len(path.steps) == 1 and path.steps[0].arg in _REQUIRED:
                raise ConfigError(f"{path.text!r} is required in every trace; it cannot be dropped")

    def transform(self, data: dict[str, Any]) -> dict[str, Any]:
        for path in self.paths:
            found = list(locate(data, path.steps))
            # list elements from the back, so earlier indexes stay valid
            found.sort(key=lambda pk: pk[1] if isinstance(pk[1], int) else -1, reverse=True)
            for parent, key in found:
                del parent[key]
        return data


class TruncateTransformer:
    """Cuts strings longer than ``maxChars`` and marks the cut: the text ends with
    ``…[truncated N chars]`` and ``metadata.truncatedFields`` lists the paths cut.
    Default fields: message contents, tool calls, prompt, response."""

    class Config(_Config):
        max_chars: int = Field(alias="maxChars", ge=1)
        fields: list[str] = Field(default_factory=lambda: list(CONTENT_PATHS))

    def __init__(self, config: Config) -> None:
        self.max_chars = config.max_chars
        self.paths = parse_paths(config.fields)

    def transform(self, data: dict[str, Any]) -> dict[str, Any]:
        limit = self.max_chars
        cut_paths: list[str] = []
        for path in self.paths:
            cut = False

            def shorten(text: str) -> str:
                nonlocal cut
                if len(text) <= limit:
                    return text
                cut = True
                return f"{text[:limit]}…[truncated {len(text) - limit} chars]"

            for parent, key in locate(data, path.steps):
                parent[key] = map_strings(parent[key], shorten)
            if cut:
                cut_paths.append(path.text)
        if cut_paths:
            metadata = data.setdefault("metadata", {})
            metadata["truncatedFields"] = [*metadata.get("truncatedFields", []), *cut_paths]
        return data


class HashFieldsTransformer:
    """Replaces every string under the given paths by ``hmac-sha256:<32 hex>`` of it,
    keyed, so equal values still join and the values cannot be guessed back without the key.
    Numbers and booleans are left alone (the trace schema types them)."""

    class Config(_Config):
        fields: list[str] = Field(min_length=1)
        key: str = Field(min_length=8)

    def __init__(self, config: Config) -> None:
        self.paths = parse_paths(config.fields)
        self.key = config.key.encode()

    def digest(self, text: str) -> str:
        mac = hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:32]
        return f"hmac-sha256:{mac}"

    def transform(self, data: dict[str, Any]) -> dict[str, Any]:
        for parent, key in content_locations(data, self.paths):
            parent[key] = map_strings(parent[key], self.digest)
        return data


class SetMetadataTransformer:
    """Merges ``values`` into ``metadata`` (``tags`` merge key by key)."""

    class Config(_Config):
        values: dict[str, Any] = Field(min_length=1)

    def __init__(self, config: Config) -> None:
        self.values = dict(config.values)

    def transform(self, data: dict[str, Any]) -> dict[str, Any]:
        merge_metadata(data, self.values)
        return data


def merge_metadata(data: dict[str, Any], values: dict[str, Any]) -> None:
    metadata = data.setdefault("metadata", {})
    for key, value in values.items():
        if key == "tags" and isinstance(value, dict) and isinstance(metadata.get("tags"), dict):
            metadata["tags"] = {**metadata["tags"], **{k: str(v) for k, v in value.items()}}
        else:
            metadata[key] = value
