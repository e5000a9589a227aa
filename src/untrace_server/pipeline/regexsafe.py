"""Regexes from routing rules, refused when they can backtrack catastrophically.

``re`` backtracks; a pattern such as ``(a+)+$`` takes exponential time on a string of
``a``s. Patterns are checked on their parsed form before they are accepted:

- a repeat of more than 16 (or unbounded) iterations may not contain another repeat;
- such a repeat may not contain alternatives unless each begins with a distinct literal;
- backreferences are refused.

What remains is at worst polynomial, and the input a rule's regex sees is cut to
``REGEX_INPUT_LIMIT`` characters, which bounds it. Possessive repeats and atomic groups
(``a++``, ``(?>...)``, Python ≥ 3.11) never backtrack into and are always allowed.
"""

from __future__ import annotations

import re
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]
from typing import Any

from untrace_server.errors import ConfigError

__all__ = ["REGEX_INPUT_LIMIT", "compile_safe"]

REGEX_INPUT_LIMIT = 16_384
_BIG = 16
_REPEATS = {C.MAX_REPEAT, C.MIN_REPEAT}


class _Unsafe(Exception):
    pass


def _has_repeat(items: Any) -> bool:
    for op, av in items:
        if op in _REPEATS and av[1] > 1:
            return True
        if op is C.SUBPATTERN and _has_repeat(av[-1]):
            return True
        if op is C.BRANCH and any(_has_repeat(alt) for alt in av[1]):
            return True
    return False


def _overlapping_branch(items: Any) -> bool:
    for op, av in items:
        if op is C.BRANCH:
            firsts = []
            for alt in av[1]:
                if not alt or alt[0][0] is not C.LITERAL:
                    return True
                firsts.append(alt[0][1])
            if len(set(firsts)) != len(firsts):
                return True
        elif op is C.SUBPATTERN and _overlapping_branch(av[-1]):
            return True
    return False


def _walk(items: Any, in_big_repeat: bool) -> None:
    for op, av in items:
        if op in _REPEATS:
            _lo, hi, body = av
            big = hi == C.MAXREPEAT or hi > _BIG
            if hi > 1 and in_big_repeat and _has_repeat(body):
                raise _Unsafe("a repeat inside a repeat (like '(a+)+')")
            if big and hi > 1 and _has_repeat(body):
                raise _Unsafe("a repeat inside a repeat (like '(a+)+')")
            if big and _overlapping_branch(body):
                raise _Unsafe("repeated alternatives that can match the same text (like '(a|ab)*')")
            _walk(body, in_big_repeat or (big and hi > 1))
        elif op is C.SUBPATTERN:
            _walk(av[-1], in_big_repeat)
        elif op is C.BRANCH:
            for alt in av[1]:
                _walk(alt, in_big_repeat)
        elif op in (C.GROUPREF, C.GROUPREF_EXISTS):
            raise _Unsafe("backreferences")
        elif op in (C.ASSERT, C.ASSERT_NOT):
            _walk(av[1], in_big_repeat)
        elif op is C.ATOMIC_GROUP or op is C.POSSESSIVE_REPEAT:
            continue


def compile_safe(pattern: str, where: str = "regex") -> re.Pattern[str]:
    """Compile ``pattern``, or raise ConfigError naming why it is refused."""
    try:
        compiled = re.compile(pattern)
        _walk(P.parse(pattern), False)
    except re.error as exc:
        raise ConfigError(f"{where}: invalid regex {pattern!r}: {exc}") from None
    except _Unsafe as exc:
        raise ConfigError(
            f"{where}: regex {pattern!r} can backtrack catastrophically ({exc}); "
            "rewrite it, e.g. with a possessive repeat 'a++' or an atomic group '(?>...)'"
        ) from None
    return compiled
