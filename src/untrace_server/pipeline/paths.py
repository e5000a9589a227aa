"""The JSONPath subset rules and transformers use to point into a trace.

Grammar: ``$`` followed by steps ``.name``, ``['name']``, ``[N]`` (negative counts from
the end), ``[*]`` or ``.*`` (every element of a list, every value of an object).
Names are the wire names: camelCase at the top level and in ``metadata``, snake_case
inside ``usage``, ``metrics`` and ``parameters`` (DESIGN §6); for the trace's own fields
the Python names (``start_time``) are accepted too.

``parse`` turns text into steps and checks them against the Trace's static shape, so a
typo (``$.request.mesages``) is refused at load, not silently never matched.
``resolve`` reads a value from a Trace struct or from its builtins dict; after a
wildcard it answers a ``Many`` (a list of every value found). ``locate`` finds the
(container, key) pairs a path designates in a builtins dict, for transformers to write.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Union

import msgspec

from untrace_server.errors import ConfigError
from untrace_server.model import Trace

__all__ = ["Many", "Path", "Step", "locate", "parse", "resolve", "struct_attr"]

_TOKEN = re.compile(
    r"""\.(?P<name>[A-Za-z_][A-Za-z0-9_-]*)
      | \.\*(?P<dotstar>)
      | \[(?P<index>-?\d{1,9})\]
      | \[\*(?P<star>)\]
      | \[(?P<q>['"])(?P<quoted>[^'"\]]{1,200})(?P=q)\]""",
    re.VERBOSE,
)


class Many(list[Any]):
    """Every value a wildcard path found; an operator holds if it holds for one of them."""


@dataclass(frozen=True)
class Step:
    kind: str  # "key" | "index" | "wild"
    arg: str | int | None = None


@dataclass(frozen=True)
class Path:
    text: str
    steps: tuple[Step, ...]
    containers: tuple[type | None, ...] = ()  # struct class each step reads, when static

    @property
    def wildcard(self) -> bool:
        return any(s.kind == "wild" for s in self.steps)


@cache
def _attr_names(cls: type) -> dict[str, str]:
    names: dict[str, str] = {}
    for f in msgspec.structs.fields(cls):
        names[f.name] = f.name
        names[f.encode_name] = f.name
    return names


def struct_attr(cls: type, key: str) -> str | None:
    """The attribute of struct ``cls`` that wire name (or Python name) ``key`` designates."""
    return _attr_names(cls).get(key)


def _unwrap(tp: Any) -> Any:
    """``X | None`` → X; anything not a struct, list or dict → Any."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else Any
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    if origin in (list, dict):
        return tp
    return Any


def _check_static(text: str, steps: tuple[Step, ...]) -> list[type | None]:
    """Refuse steps the Trace's shape cannot have; answer, per step, the struct class the
    step reads from when that is known statically (None otherwise)."""
    tp: Any = Trace
    containers: list[type | None] = []
    for step in steps:
        containers.append(tp if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else None)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            if step.kind == "key":
                attr = struct_attr(tp, str(step.arg))
                if attr is None:
                    known = ", ".join(f.encode_name for f in msgspec.structs.fields(tp))
                    raise ConfigError(
                        f"JSONPath {text!r}: no field {step.arg!r} here; fields: {known}"
                    )
                tp = _unwrap(typing.get_type_hints(tp)[attr])
            elif step.kind == "index":
                raise ConfigError(f"JSONPath {text!r}: [{step.arg}] on an object")
            else:
                tp = Any
        elif origin is list:
            if step.kind == "key":
                raise ConfigError(
                    f"JSONPath {text!r}: {step.arg!r} on a list; use [N] or [*] first"
                )
            tp = _unwrap(typing.get_args(tp)[0])
        elif origin is dict:
            if step.kind == "index":
                raise ConfigError(f"JSONPath {text!r}: [{step.arg}] on an object")
            tp = _unwrap(typing.get_args(tp)[1])
        else:
            tp = Any
    return containers


def parse(text: str, *, check: bool = True) -> Path:
    """Parse ``text``; raise ConfigError with a readable reason when it is not a path
    into a trace."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise ConfigError(f"JSONPath {text!r} must start with '$' (e.g. '$.metadata.environment')")
    steps: list[Step] = []
    pos = 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ConfigError(f"JSONPath {text!r}: cannot read from position {pos}: {text[pos:]!r}")
        if m.group("name") is not None:
            steps.append(Step("key", m.group("name")))
        elif m.group("quoted") is not None:
            steps.append(Step("key", m.group("quoted")))
        elif m.group("index") is not None:
            steps.append(Step("index", int(m.group("index"))))
        else:
            steps.append(Step("wild"))
        pos = m.end()
    if not steps:
        raise ConfigError(f"JSONPath {text!r} designates the whole trace, not a field")
    containers = _check_static(text, tuple(steps)) if check else []
    if steps[0].kind == "key":  # the trace's own fields by their wire (camelCase) name
        attr = struct_attr(Trace, str(steps[0].arg))
        if attr is not None:
            steps[0] = Step("key", _wire_names()[attr])
    return Path(text, tuple(steps), tuple(containers))


@cache
def _wire_names() -> dict[str, str]:
    return {f.name: f.encode_name for f in msgspec.structs.fields(Trace)}


def _step(value: Any, step: Step) -> Any:
    if step.kind == "key":
        if type(value) is dict:
            return value.get(step.arg)
        if isinstance(value, msgspec.Struct):
            attr = struct_attr(type(value), str(step.arg))
            return None if attr is None else getattr(value, attr)
        return None
    if type(value) is list:
        index = int(step.arg)  # type: ignore[arg-type]
        return value[index] if -len(value) <= index < len(value) else None
    return None


def _children(value: Any) -> list[Any]:
    if type(value) is list:
        return value
    if type(value) is dict:
        return list(value.values())
    if isinstance(value, msgspec.Struct):
        return [getattr(value, f) for f in value.__struct_fields__]
    return []


def resolve(root: Any, steps: tuple[Step, ...]) -> Any:
    """The value at ``steps`` under ``root`` (None when absent); a ``Many`` after a wildcard."""
    value = root
    for i, step in enumerate(steps):
        if value is None:
            break
        if step.kind == "wild":
            found = Many()
            rest = steps[i + 1 :]
            for child in _children(value):
                got = resolve(child, rest)
                if type(got) is Many:
                    found.extend(got)
                else:
                    found.append(got)
            return found
        value = _step(value, step)
    if value is None and any(s.kind == "wild" for s in steps):
        return Many()
    return value


def locate(data: Any, steps: tuple[Step, ...]) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) a path designates in a builtins dict (present keys only)."""
    *head, last = steps
    parents = [data]
    for step in head:
        nxt: list[Any] = []
        for p in parents:
            if step.kind == "wild":
                nxt.extend(_children(p))
            else:
                child = _step(p, step)
                if child is not None:
                    nxt.append(child)
        parents = nxt
    for p in parents:
        if last.kind == "wild":
            if type(p) is list:
                yield from ((p, i) for i in range(len(p)))
            elif type(p) is dict:
                yield from ((p, k) for k in list(p))
        elif last.kind == "key" and type(p) is dict and last.arg in p:
            yield p, last.arg
        elif last.kind == "index" and type(p) is list:
            index = int(last.arg)  # type: ignore[arg-type]
            if -len(p) <= index < len(p):
                yield p, index % len(p)
