"""Condition operators, regex safety, and the compiler that turns condition trees into
one Python function.

A condition tree is the routing document's JSON (camelCase): a leaf
``{"field": "$.path", "operator": op, "value": v}``, or a group with any of
``all`` (every node holds), ``any`` (one node holds) and ``not`` (the node does not
hold), which must all hold together. An empty group holds.

Semantics of a leaf, for the value ``x`` found at ``field`` (``None`` when absent —
absent and null are the same thing, as they are on the wire):

- ``eq`` / ``neq``: JSON equality (``true`` is not ``1``, ``1`` is ``1.0``).
- ``gt`` / ``lt`` / ``gte`` / ``lte``: ``x`` is a number and compares so (``value``
  must be a number).
- ``contains``: substring of a string, element of a list, key of an object.
- ``regex``: ``x`` is a string and the pattern is found in its first 16,384 characters.
- ``in``: ``x`` equals one of ``value`` (a list).
- ``exists``: ``x`` is present and not null (``value: false`` inverts it).

A field with a wildcard (``[*]``) yields several values; the leaf holds when it holds for
at least one of them, and never when there are none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from untrace_server.errors import ConfigError
from untrace_server.model import Trace
from untrace_server.pipeline.paths import Many, Path, parse, struct_attr
from untrace_server.pipeline.regexsafe import REGEX_INPUT_LIMIT, compile_safe

__all__ = ["OPERATORS", "compile_condition", "compile_matcher", "predicate", "strict_eq"]

OPERATORS = ("eq", "neq", "gt", "lt", "gte", "lte", "contains", "regex", "in", "exists")
MAX_DEPTH = 32
_NUMBERS = (int, float)


def strict_eq(a: Any, b: Any) -> bool:
    """JSON equality: booleans are not numbers, containers compare element by element."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(strict_eq(a[k], b[k]) for k in a)
    return bool(a == b)


def _is_number(x: Any) -> bool:
    return isinstance(x, _NUMBERS) and not isinstance(x, bool)


def _contains(x: Any, value: Any) -> bool:
    if type(x) is str:
        return isinstance(value, str) and value in x
    if type(x) is list:
        return any(strict_eq(item, value) for item in x)
    if type(x) is dict:
        return isinstance(value, str) and value in x
    return False


def predicate(operator: str, value: Any, where: str = "condition") -> Callable[[Any], bool]:
    """A one-value test for ``operator`` and ``value``; ConfigError when they don't fit."""
    if operator in ("eq", "neq"):
        positive = operator == "eq"
        return lambda x: strict_eq(x, value) is positive
    if operator in ("gt", "lt", "gte", "lte"):
        if not _is_number(value):
            raise ConfigError(f"{where}: operator {operator!r} needs a number, got {value!r}")
        if operator == "gt":
            return lambda x: _is_number(x) and x > value
        if operator == "lt":
            return lambda x: _is_number(x) and x < value
        if operator == "gte":
            return lambda x: _is_number(x) and x >= value
        return lambda x: _is_number(x) and x <= value
    if operator == "contains":
        if value is None:
            raise ConfigError(f"{where}: operator 'contains' needs a value")
        return lambda x: _contains(x, value)
    if operator == "regex":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: operator 'regex' needs a pattern string")
        search = compile_safe(value, where).search
        limit = REGEX_INPUT_LIMIT
        return lambda x: type(x) is str and search(x[:limit]) is not None
    if operator == "in":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: operator 'in' needs a list, got {value!r}")
        options = list(value)
        strings = frozenset(v for v in options if isinstance(v, str))
        others = [v for v in options if not isinstance(v, str)]
        return lambda x: (x in strings) if type(x) is str else any(strict_eq(x, v) for v in others)
    if operator == "exists":
        if value not in (None, True, False):
            raise ConfigError(f"{where}: operator 'exists' takes true or false, got {value!r}")
        if value is False:
            return lambda x: x is None
        return lambda x: x is not None
    raise ConfigError(f"{where}: unknown operator {operator!r}; known: {', '.join(OPERATORS)}")


class _Compiler:
    """Generates the source of one function evaluating many condition trees. Each distinct
    path prefix is read once per trace; common leaves are inlined; the rest call a
    predicate. Only names and integers go into the source: values stay in the namespace."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {"Many": Many, "_resolve": None}
        self.lines: list[str] = []
        self.vars: dict[tuple[Any, ...], str] = {}

    def const(self, value: Any) -> str:
        name = f"c{len(self.ns)}"
        self.ns[name] = value
        return name

    def var(self, path: Path) -> str:
        """Emit the reads for ``path`` (sharing prefixes); return the variable name."""
        from untrace_server.pipeline.paths import resolve

        key: tuple[Any, ...] = ()
        current = "t"
        for i, step in enumerate(path.steps):
            # a wildcard's variable holds the whole rest of the path: key it by all of it
            key = path.steps if step.kind == "wild" else (*key, step)
            if key in self.vars and step.kind == "wild":
                return self.vars[key]
            if key in self.vars:
                current = self.vars[key]
                continue
            name = f"v{len(self.vars)}"
            self.vars[key] = name
            if step.kind == "wild":
                tail = self.const(path.steps[i:])
                self.ns["_resolve"] = resolve
                self.lines.append(f"    {name} = _resolve({current}, {tail})")
                return name
            cls = path.containers[i] if i < len(path.containers) else None
            if step.kind == "key" and current == "t":  # the Trace itself: a plain attribute
                attr = struct_attr(Trace, str(step.arg))
                self.lines.append(f"    {name} = t.{attr}")
            elif step.kind == "key" and cls is not None:  # a struct field, or None
                attr = struct_attr(cls, str(step.arg))
                self.lines.append(
                    f"    {name} = {current}.{attr} if {current} is not None else None"
                )
            elif step.kind == "key":
                k = self.const(step.arg)
                self.lines.append(
                    f"    {name} = ({current}.get({k}) if {current}.__class__ is dict "
                    f"else _step({current}, {self.const(step)}))"
                )
            else:
                self.lines.append(f"    {name} = _step({current}, {self.const(step)})")
            current = name
        return current

    def leaf(self, node: dict[str, Any], where: str) -> str:
        field, operator, value = node.get("field"), node.get("operator"), node.get("value")
        if not isinstance(field, str):
            raise ConfigError(f"{where}: 'field' must be a JSONPath string, got {field!r}")
        path = parse(field)
        test = predicate(str(operator), value, f"{where} ({field})")
        v = self.var(path)
        if path.wildcard:
            p = self.const(test)
            return f"any(map({p}, {v}))"
        if operator == "eq" and type(value) is str:
            return f"({v} == {self.const(value)})"
        if operator == "neq" and type(value) is str:
            return f"({v} != {self.const(value)})"
        if operator == "exists":
            return f"({v} is None)" if value is False else f"({v} is not None)"
        if operator == "in" and isinstance(value, list) and all(type(x) is str for x in value):
            s = self.const(frozenset(value))
            return f"({v}.__class__ is str and {v} in {s})"
        return f"{self.const(test)}({v})"

    def node(self, node: Any, where: str, depth: int = 0) -> str:
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: conditions nest deeper than {MAX_DEPTH} levels")
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: a condition must be an object, got {node!r}")
        if "field" in node:
            return self.leaf(node, where)
        parts: list[str] = []
        for key in node:
            if key not in ("all", "any", "not"):
                raise ConfigError(f"{where}: unknown key {key!r} in a condition group")
        for key, joiner, empty in (("all", " and ", "True"), ("any", " or ", "False")):
            if node.get(key) is not None:
                items = [self.node(n, where, depth + 1) for n in node[key]]
                parts.append(f"({joiner.join(items)})" if items else empty)
        if node.get("not") is not None:
            parts.append(f"(not {self.node(node['not'], where, depth + 1)})")
        return f"({' and '.join(parts)})" if parts else "True"


def compile_matcher(
    trees: Sequence[tuple[Any, bool, str]],
) -> Callable[[Any], list[int]]:
    """One function over a trace answering the indexes of the trees that hold, in order.
    ``trees`` is ``(condition tree, stop, where)``: when a tree with ``stop`` holds, the
    later ones are not evaluated. ``where`` names the tree in error messages."""
    from untrace_server.pipeline.paths import _step

    c = _Compiler()
    c.ns["_step"] = _step
    tests = [(c.node(tree, where), stop) for tree, stop, where in trees]
    body = ["def _match(t):", *c.lines, "    m = []"]
    for i, (expr, stop) in enumerate(tests):
        body.append(f"    if {expr}:")
        body.append(f"        m.append({i})")
        if stop:
            body.append("        return m")
    body.append("    return m")
    exec(compile("\n".join(body), "<untrace-rules>", "exec"), c.ns)
    fn: Callable[[Any], list[int]] = c.ns["_match"]
    return fn


def compile_condition(tree: Any, where: str = "condition") -> Callable[[Any], bool]:
    """A boolean test of one condition tree against a trace."""
    match = compile_matcher([(tree, False, where)])
    return lambda trace: bool(match(trace))
