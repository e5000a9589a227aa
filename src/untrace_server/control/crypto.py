"""Secrets at rest: envelope encryption with AES-256-GCM.

Every value gets its own random data key; the data key is wrapped (AES-256-GCM) by a
master key, and the ciphertext names the master key's id::

    enc:v1:<kid>:<base64url(wrap_nonce | wrapped data key | nonce | ciphertext)>

so the master key can rotate: ``rewrap`` re-encrypts only the data key under the current
master key. The keyring is the configured ``UNTRACE_MASTER_KEY`` (base64, 32 bytes) plus
``security.previous_master_keys``, else the file ``<data_dir>/master.keys`` (0600, one
base64 key a line, the current first), generated on first start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from untrace_server.errors import ConfigError

__all__ = ["PREFIX", "Keyring", "is_encrypted", "load_keyring"]

PREFIX = "enc:v1:"
_NONCE = 12
_WRAPPED = 32 + 16


def _kid(key: bytes) -> str:
    return hashlib.sha256(b"untrace-master-key" + key).hexdigest()[:8]


def _decode_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("master key must be base64") from None
    if len(key) != 32:
        raise ConfigError(f"master key must be 32 bytes (AES-256), got {len(key)}")
    return key


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


class Keyring:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigError("the keyring needs at least one master key")
        self.current = _kid(keys[0])
        self._keys = {_kid(k): AESGCM(k) for k in keys}

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def encrypt(self, plaintext: str) -> str:
        data_key = AESGCM.generate_key(bit_length=256)
        wrap_nonce, nonce = os.urandom(_NONCE), os.urandom(_NONCE)
        wrapped = self._keys[self.current].encrypt(wrap_nonce, data_key, self.current.encode())
        sealed = AESGCM(data_key).encrypt(nonce, plaintext.encode(), None)
        blob = base64.urlsafe_b64encode(wrap_nonce + wrapped + nonce + sealed).decode()
        return f"{PREFIX}{self.current}:{blob}"

    def _open(self, value: str) -> tuple[str, bytes, bytes, bytes]:
        try:
            kid, blob = value.removeprefix(PREFIX).split(":", 1)
            raw = base64.urlsafe_b64decode(blob)
        except (ValueError, binascii.Error):
            raise ConfigError("malformed encrypted value") from None
        if kid not in self._keys:
            raise ConfigError(f"no master key with id {kid} in the keyring")
        data_key = self._unwrap(kid, raw[:_NONCE], raw[_NONCE : _NONCE + _WRAPPED])
        return (
            kid,
            data_key,
            raw[_NONCE + _WRAPPED : 2 * _NONCE + _WRAPPED],
            raw[2 * _NONCE + _WRAPPED :],
        )

    def _unwrap(self, kid: str, nonce: bytes, wrapped: bytes) -> bytes:
        try:
            return self._keys[kid].decrypt(nonce, wrapped, kid.encode())
        except InvalidTag:
            raise ConfigError(f"master key {kid} cannot unwrap this value") from None

    def decrypt(self, value: str) -> str:
        if not is_encrypted(value):
            return value
        _, data_key, nonce, sealed = self._open(value)
        try:
            return AESGCM(data_key).decrypt(nonce, sealed, None).decode()
        except InvalidTag:
            raise ConfigError("encrypted value was tampered with") from None

    def rewrap(self, value: str) -> str:
        """The same ciphertext with its data key wrapped by the current master key."""
        kid, data_key, nonce, sealed = self._open(value)
        if kid == self.current:
            return value
        wrap_nonce = os.urandom(_NONCE)
        wrapped = self._keys[self.current].encrypt(wrap_nonce, data_key, self.current.encode())
        blob = base64.urlsafe_b64encode(wrap_nonce + wrapped + nonce + sealed).decode()
        return f"{PREFIX}{self.current}:{blob}"


def new_master_key() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def keyring_file(data_dir: Path) -> Path:
    return data_dir / "master.keys"


def write_keyring_file(path: Path, keys: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, ("\n".join(keys) + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_keyring(master_key: str | None, previous: list[str], data_dir: Path) -> Keyring:
    """The configured master key (and previous ones), else the data dir's key file,
    generated (0600) on first use."""
    texts = [master_key, *previous] if master_key else list(previous)
    path = keyring_file(data_dir)
    if path.exists():
        texts.extend(line for line in path.read_text().splitlines() if line.strip())
    elif not master_key:
        generated = new_master_key()
        write_keyring_file(path, [generated])
        texts.insert(0, generated)
    return Keyring([_decode_key(t) for t in dict.fromkeys(texts)])
