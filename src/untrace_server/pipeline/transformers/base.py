"""The ``Transformer`` protocol and the registry that finds transformers by name.

A transformer is a class with a pydantic ``Config`` model (``extra="forbid"``) and a
``transform(data)`` method over the trace as a builtins dict (camelCase at the top, as
``model.to_builtins`` makes it). ``transform`` may change ``data`` in place: each chain
works on its own copy. It is built once, when the rules load::

    [project.entry-points."untrace.transformers"]
    my_transformer = "my_package.module:MyTransformer"

Built-in names resolve without entry points; an entry point may not take a built-in name.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

import pydantic

from untrace_server.errors import ConfigError
from untrace_server.pipeline.paths import Path, locate, parse

__all__ = [
    "CONTENT_PATHS",
    "GROUP",
    "Transformer",
    "available",
    "content_locations",
    "create",
    "parse_paths",
    "transformer_class",
]

GROUP = "untrace.transformers"

BUILTINS = {
    "pii_redaction": "untrace_server.pipeline.transformers.pii:PiiRedactor",
    "drop_fields": "untrace_server.pipeline.transformers.fields:DropFieldsTransformer",
    "truncate": "untrace_server.pipeline.transformers.fields:TruncateTransformer",
    "hash_fields": "untrace_server.pipeline.transformers.fields:HashFieldsTransformer",
    "set_metadata": "untrace_server.pipeline.transformers.fields:SetMetadataTransformer",
}

# Where the text of a call lives: message contents (all parts), tool calls and their
# arguments, the prompt, the response. PII redaction and truncation default to these.
CONTENT_PATHS = (
    "$.request.messages[*].content",
    "$.request.messages[*].tool_calls",
    "$.request.prompt",
    "$.response.content",
    "$.response.messages[*].content",
    "$.response.messages[*].tool_calls",
)


@runtime_checkable
class Transformer(Protocol):
    Config: ClassVar[type[pydantic.BaseModel]]

    def transform(self, data: dict[str, Any]) -> dict[str, Any]: ...


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP) if ep.name not in BUILTINS}


def available() -> list[str]:
    return sorted({*BUILTINS, *_entry_points()})


def transformer_class(name: str) -> type[Any]:
    if name in BUILTINS:
        module, _, attr = BUILTINS[name].partition(":")
        cls: type[Any] = getattr(importlib.import_module(module), attr)
        return cls
    ep = _entry_points().get(name)
    if ep is None:
        raise ConfigError(f"unknown transformer {name!r}; available: {', '.join(available())}")
    try:
        loaded: type[Any] = ep.load()
    except Exception as exc:  # a broken plugin is a config problem, named
        raise ConfigError(f"transformer {name!r} ({ep.value}) failed to load: {exc}") from None
    return loaded


def create(name: str, config: dict[str, Any] | None = None) -> Transformer:
    """Validate ``config`` and build the transformer; ConfigError on any problem."""
    cls = transformer_class(name)
    try:
        validated = cls.Config.model_validate(config or {})
        transformer: Transformer = cls(validated)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"transformer {name!r}: {problems}") from None
    except ConfigError as exc:
        raise ConfigError(f"transformer {name!r}: {exc}") from None
    return transformer


def parse_paths(texts: list[str]) -> list[Path]:
    return [parse(t) for t in texts]


def content_locations(data: dict[str, Any], paths: list[Path]) -> Iterator[tuple[Any, Any]]:
    for path in paths:
        yield from locate(data, path.steps)


def map_strings(value: Any, fn: Any) -> Any:
    """``value`` with ``fn`` applied to every string inside it (dict values, list items)."""
    if type(value) is str:
        return fn(value)
    if type(value) is list:
        for i, item in enumerate(value):
            value[i] = map_strings(item, fn)
    elif type(value) is dict:
        for k, item in value.items():
            value[k] = map_strings(item, fn)
    return value
