"""The current span, per thread and per asyncio task (contextvars)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._span import Span

__all__ = ["current_span"]

current_span: ContextVar[Span | None] = ContextVar("untrace_current_span", default=None)
