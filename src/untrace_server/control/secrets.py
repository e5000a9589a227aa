"""Which fields of a destination config are secrets, and how they are kept: encrypted in
the store, masked in every API response, decrypted only to build the connector.

A field is a secret when the connector's config model declares it a ``SecretStr`` or its
name says so (key, secret, token, password); header values are secrets when the header
name says so (authorization, key, token, secret, cookie).
"""

from __future__ import annotations

import re
from typing import Any

import pydantic

from untrace_server.control.crypto import Keyring, is_encrypted
from untrace_server.destinations import registry
from untrace_server.errors import ConfigError

__all__ = ["MASK", "decrypt_config", "encrypt_config", "mask_config", "merge_masked"]

MASK = "********"
_SECRET_NAME = re.compile(r"(key|secret|token|password|passwd|credential)", re.I)
_SECRET_HEADER = re.compile(r"(authorization|key|token|secret|cookie|password)", re.I)


def _secret_fields(type_name: str) -> set[str]:
    try:
        model = registry.connector_class(type_name).Config
    except (ConfigError, AttributeError):
        return set()
    found = set()
    for name, info in model.model_fields.items():
        if "SecretStr" in repr(info.annotation) or _SECRET_NAME.search(name):
            found.add(name)
    return found


def _map(type_name: str, config: dict[str, Any], fn: Any) -> dict[str, Any]:
    fields = _secret_fields(type_name)
    out: dict[str, Any] = {}
    for name, value in config.items():
        if name in fields or (name not in fields and _SECRET_NAME.fullmatch(name)):
            out[name] = fn(value) if isinstance(value, str) else value
        elif name == "headers" and isinstance(value, dict):
            out[name] = {
                h: fn(v) if isinstance(v, str) and _SECRET_HEADER.search(h) else v
                for h, v in value.items()
            }
        else:
            out[name] = value
    return out


def encrypt_config(keyring: Keyring, type_name: str, config: dict[str, Any]) -> dict[str, Any]:
    return _map(type_name, config, lambda v: v if is_encrypted(v) else keyring.encrypt(v))


def decrypt_config(keyring: Keyring, type_name: str, config: dict[str, Any]) -> dict[str, Any]:
    return _map(type_name, config, keyring.decrypt)


def rewrap_config(keyring: Keyring, type_name: str, config: dict[str, Any]) -> dict[str, Any]:
    return _map(type_name, config, lambda v: keyring.rewrap(v) if is_encrypted(v) else v)


def mask_config(type_name: str, config: dict[str, Any]) -> dict[str, Any]:
    return _map(type_name, config, lambda v: MASK)


def merge_masked(type_name: str, new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """An update that sends a secret back masked keeps the stored secret."""
    if not old:
        return new
    merged = dict(new)
    for name, value in new.items():
        if value == MASK and name in old:
            merged[name] = old[name]
        elif name == "headers" and isinstance(value, dict) and isinstance(old.get(name), dict):
            merged[name] = {h: old[name].get(h, v) if v == MASK else v for h, v in value.items()}
    return merged


def secret_values(type_name: str, config: dict[str, Any]) -> list[str]:
    """The plaintext secrets of a (decrypted) config, e.g. to scrub them from messages."""
    found: list[str] = []

    def collect(value: str) -> str:
        found.append(value)
        return value

    _map(type_name, config, collect)
    return [v for v in found if v]


def unwrap_secret(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, pydantic.SecretStr) else value
