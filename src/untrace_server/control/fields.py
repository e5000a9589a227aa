"""Field-level encryption of configured trace fields at rest in the queue (seed §6.2).

``security.encrypt_fields`` names fields by their wire path (``metadata.user_email``,
``request.messages[*].content``, ``response.content``). Each value found there is
replaced, when the trace is made durable, by an ``enc:v1:`` envelope (AES-256-GCM, the
same keyring as destination secrets) of its JSON, so its type comes back on decryption.
The values stay encrypted in the ``traces`` topic, through the worker (rules see
ciphertext: they can test ``exists`` but never match the content), in every outbox and
in the dead-letter queue; only the deliverer decrypts, in memory, right before
``send_batch``.

Paths are checked at start-up: they must lie under ``metadata``, ``request``,
``response`` or ``error``, and end at a string or a free-form value (an ``int`` such as
``response.usage.total_tokens`` cannot hold a ciphertext). ``metadata.customerId`` and
``metadata.tags`` (as a whole) are refused, and left out of wildcards such as
``metadata.*``: the service itself relies on them.
"""

from __future__ import annotations

import logging
import types
import typing
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from untrace_server import model
from untrace_server.config import Settings
from untrace_server.control.crypto import Keyring, is_encrypted
from untrace_server.control.ratelimit import KeyRateLimiter, RateLimitedSink
from untrace_server.delivery.manager import DeliveryManager, DestinationKey
from untrace_server.destinations.base import Destination
from untrace_server.errors import ConfigError
from untrace_server.pipeline import paths
from untrace_server.queue.base import Queue

__all__ = ["FieldCipher", "FieldDecryptingManager", "FieldEncryptingSink", "field_cipher"]

log = logging.getLogger("untrace.security")

_ROOTS = ("metadata", "request", "response", "error")
_PROTECTED = ("customerId", "tags")
_REFUSED = tuple(f"metadata.{name}" for name in _PROTECTED)


def _optional(tp: Any) -> Any:
    """``X | None`` → X."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return tp


def _target_type(path: paths.Path) -> Any:
    """The static type a path ends at (Any inside free-form values)."""
    tp: Any = model.Trace
    for step in path.steps:
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            attr = paths.struct_attr(tp, str(step.arg)) if step.kind == "key" else None
            tp = typing.get_type_hints(tp)[attr] if attr else Any
        elif origin is list:
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return Any
        tp = _optional(tp)
    return tp


def parse_field(text: str) -> paths.Path:
    """``metadata.user_email`` (or ``$.metadata.user_email``) → a checked path."""
    bare = text.removeprefix("$").removeprefix(".")
    if bare.split(".")[0].split("[")[0] not in _ROOTS:
        raise ConfigError(f"security.encrypt_fields: {text!r} must lie under {', '.join(_ROOTS)}")
    if bare in _REFUSED:
        raise ConfigError(f"security.encrypt_fields: {text!r} cannot be encrypted")
    try:
        path = paths.parse("$." + bare)
    except ConfigError as exc:
        raise ConfigError(f"security.encrypt_fields: {exc}") from None
    if _target_type(path) not in (str, Any):
        raise ConfigError(f"security.encrypt_fields: {text!r} is not a string or free-form field")
    return path


def _slots(node: Any, steps: tuple[paths.Step, ...]) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) a path designates in a Trace struct (present values only)."""
    step, rest = steps[0], steps[1:]
    keys: list[Any]
    if isinstance(node, msgspec.Struct):
        if step.kind != "key":
            return
        attr = paths.struct_attr(type(node), str(step.arg))
        keys = [attr] if attr else []
    elif type(node) is dict:
        keys = list(node) if step.kind == "wild" else [step.arg] if step.arg in node else []
    elif type(node) is list:
        if step.kind == "wild":
            keys = list(range(len(node)))
        elif step.kind == "index" and -len(node) <= int(step.arg or 0) < len(node):
            keys = [int(step.arg or 0) % len(node)]
        else:
            keys = []
    else:
        return
    for key in keys:
        if not rest:
            yield node, key
        else:
            child = getattr(node, key) if isinstance(node, msgspec.Struct) else node[key]
            if child is not None:
                yield from _slots(child, rest)


def _get(container: Any, key: Any) -> Any:
    return getattr(container, key) if isinstance(container, msgspec.Struct) else container[key]


def _set(container: Any, key: Any, value: Any) -> None:
    if isinstance(container, msgspec.Struct):
        setattr(container, key, value)
    else:
        container[key] = value


def field_cipher(settings: Settings, keyring: Keyring) -> FieldCipher | None:
    """The cipher for ``security.encrypt_fields`` (None when none is configured);
    ConfigError for a bad path, or for a fleet node without a shared master key."""
    fields = settings.security.encrypt_fields
    if not fields:
        return None
    if settings.role != "all" and not settings.master_key:
        raise ConfigError(
            "security.encrypt_fields on a fleet node needs UNTRACE_MASTER_KEY, shared by "
            "every node: API nodes encrypt what workers decrypt"
        )
    return FieldCipher(keyring, fields)


class FieldCipher:
    """Encrypts and decrypts the configured fields of a Trace, in place."""

    def __init__(self, keyring: Keyring, fields: Sequence[str]) -> None:
        self.keyring = keyring
        self.paths = [parse_field(f) for f in fields]

    def _slots(self, trace: model.Trace, path: paths.Path) -> list[tuple[Any, Any]]:
        """Where ``path`` points in ``trace``, less what the service relies on (a wildcard
        such as ``metadata.*`` never takes customerId or tags)."""
        meta = trace.metadata
        return [(c, k) for c, k in _slots(trace, path.steps) if not (c is meta and k in _PROTECTED)]

    def encrypt(self, trace: model.Trace) -> model.Trace:
        for path in self.paths:
            for container, key in self._slots(trace, path):
                value = _get(container, key)
                if value is not None:
                    text = msgspec.json.encode(value).decode()
                    _set(container, key, self.keyring.encrypt(text))
        return trace

    def decrypt(self, trace: model.Trace) -> model.Trace:
        # the inverse of encrypt: last path first, so overlapping paths (metadata.profile
        # and metadata.profile.plan, or metadata.* and metadata.user_email) unwind
        for path in reversed(self.paths):
            for container, key in self._slots(trace, path):
                value = _get(container, key)
                if not is_encrypted(value):
                    continue
                try:
                    _set(container, key, msgspec.json.decode(self.keyring.decrypt(value)))
                except (ConfigError, msgspec.DecodeError) as exc:  # left as it is
                    log.warning("trace %s: %s not decrypted: %s", trace.id, path.text, exc)
        return trace

    def decode(self, payload: bytes) -> model.Trace:
        """A queued payload as the destination must see it: decoded, fields decrypted."""
        return self.decrypt(model.decode(payload))


class FieldEncryptingSink(RateLimitedSink):
    """The rate-limited sink that encrypts the configured fields of every accepted trace
    before it is published: nothing in the queue holds their plaintext."""

    def __init__(self, queue: Queue, limiter: KeyRateLimiter, cipher: FieldCipher) -> None:
        super().__init__(queue, limiter)
        self.cipher = cipher

    def stamp(self, trace: model.Trace, customer_id: str) -> model.Trace:
        return self.cipher.encrypt(super().stamp(trace, customer_id))


class FieldDecryptingManager(DeliveryManager):
    """The delivery manager whose deliverers decrypt the configured fields for sending."""

    def __init__(self, *args: Any, cipher: FieldCipher, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cipher = cipher

    async def _start(self, key: DestinationKey, destination: Destination, print_: str) -> None:
        await super()._start(key, destination, print_)
        # _start creates the deliverer's task without awaiting after it, so the task has
        # not run yet: its first batch already decodes through the cipher.
        self.running[key].deliverer.decode_payload = self.cipher.decode
