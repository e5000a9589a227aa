"""Find a connector class by its type name through the ``untrace.destinations`` entry-point
group, so third-party packages add destinations the same way built-in ones are added."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

import pydantic

from untrace_server.destinations.base import Destination, DestinationContext
from untrace_server.errors import ConfigError

__all__ = ["available", "build", "connector_class", "validate_config"]

GROUP = "untrace.destinations"


@cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> list[str]:
    return sorted(_entry_points())


def connector_class(type_name: str) -> type[Any]:
    ep = _entry_points().get(type_name)
    if ep is None:
        raise ConfigError(
            f"unknown destination type {type_name!r}; installed: {', '.join(available())}"
        )
    cls: type[Any] = ep.load()
    return cls


def validate_config(type_name: str, config: dict[str, Any]) -> pydantic.BaseModel:
    cls = connector_class(type_name)
    try:
        return cls.Config.model_validate(config)  # type: ignore[no-any-return]
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"destination type {type_name!r}: {problems}") from None


def build(type_name: str, config: dict[str, Any], context: DestinationContext) -> Destination:
    """Validate ``config`` and construct the connector (not started)."""
    cls = connector_class(type_name)
    validated = validate_config(type_name, config)
    destination: Destination = cls(validated, context)
    return destination
