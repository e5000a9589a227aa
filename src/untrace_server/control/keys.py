"""API keys: how they look, how they are hashed, and who holds which scopes.

A key is shown once at creation. The store keeps a short lookup prefix and an
HMAC-SHA256 of the whole key under the server secret — never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "PREFIX_LENGTH",
    "SCOPES",
    "ApiKey",
    "generate_key",
    "hash_key",
    "key_prefix",
    "load_server_secret",
]

SCOPES = ("ingest", "proxy", "read", "write", "admin")
PREFIX_LENGTH = 12
_KEY_HEAD = "utk_"


@dataclass(frozen=True)
class ApiKey:
    id: str
    customer_id: str
    prefix: str
    scopes: frozenset[str]
    name: str = ""
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    last_used_at: float | None = None
    requests_per_s: int | None = None  # None: the server default (security section)
    traces_per_s: int | None = None
    ip_allowlist: tuple[str, ...] = ()  # CIDRs; empty: any address

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def generate_key() -> str:
    return _KEY_HEAD + secrets.token_urlsafe(30).replace("-", "x").replace("_", "y")


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def hash_key(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def load_server_secret(configured: str | None, data_dir: Path) -> bytes:
    """The HMAC key for API-key hashes: from settings, else ``<data_dir>/secret.key``,
    generated (0600) on first start."""
    if configured:
        return configured.encode()
    path = data_dir / "secret.key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, value)
    finally:
        os.close(fd)
    return value
