"""Who is calling: an API key from ``Authorization: Bearer`` (or ``X-Untrace-Key``) to
the ApiKey it names, with a short cache so the store is not read on every request."""

from __future__ import annotations

import time

from untrace_server.control.keys import ApiKey
from untrace_server.control.store import ControlStore
from untrace_server.errors import Forbidden, Unauthorized

__all__ = ["Authenticator", "bearer_token"]

_CACHE_TTL_S = 5.0
_CACHE_MAX = 10_000


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    def __init__(self, store: ControlStore, *, cache_ttl_s: float = _CACHE_TTL_S) -> None:
        self.store = store
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[ApiKey | None, float]] = {}
        self.last_used: dict[str, float] = {}

    async def authenticate(self, token: str | None, scope: str) -> ApiKey:
        if token is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None and now - cached[1] < self.cache_ttl_s:
            key = cached[0]
        else:
            key = await self.store.find_key(token)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[token] = (key, now)
        if key is None or key.revoked_at is not None:
            raise Unauthorized("invalid API key")
        if key.expired(now):
            raise Unauthorized("API key has expired")
        if not key.allows(scope):
            raise Forbidden(f"API key lacks the {scope!r} scope")
        self.last_used[key.id] = now
        return key

    async def flush_last_used(self) -> None:
        used, self.last_used = self.last_used, {}
        await self.store.touch_keys(used)
