"""Transformers: named, configured steps a rule applies, in order, to the trace it routes.

Built in: ``pii_redaction``, ``drop_fields``, ``truncate``, ``hash_fields``,
``set_metadata``. Third parties register through the ``untrace.transformers`` entry-point
group (see ``base``)."""

from untrace_server.pipeline.transformers.base import (
    GROUP,
    Transformer,
    available,
    create,
    transformer_class,
)

__all__ = ["GROUP", "Transformer", "available", "create", "transformer_class"]
