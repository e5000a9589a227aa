"""Who is calling: an API key from ``Authorization: Bearer`` (or ``X-Untrace-Key``) to
the ApiKey it names, with a short cache so the store is not read on every request.

Every receiver, the proxy and the management API authenticate here, so this is also
where a key's IP allowlist and its requests/s limit apply (the traces/s limit applies
in the trace sink), and where JWT service tokens are accepted."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from untrace_server.control.keys import ApiKey
from untrace_server.control.netallow import current_context, ip_allowed
from untrace_server.control.store import ControlStore
from untrace_server.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from untrace_server.control.jwt import ServiceTokenVerifier
    from untrace_server.control.ratelimit import KeyRateLimiter

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
    def __init__(
        self,
        store: ControlStore,
        *,
        cache_ttl_s: float = _CACHE_TTL_S,
        limiter: KeyRateLimiter | None = None,
        service_tokens: ServiceTokenVerifier | None = None,
    ) -> None:
        self.store = store
        self.cache_ttl_s = cache_ttl_s
        self.limiter = limiter
        self.service_tokens = service_tokens
        self._cache: dict[str, tuple[ApiKey | None, float]] = {}
        self.last_used: dict[str, float] = {}

    def forget(self, key_id: str) -> None:
        """Drop cached lookups of a key (after a revoke or rotation in this process)."""
        for token in [t for t, (k, _) in self._cache.items() if k is not None and k.id == key_id]:
            del self._cache[token]

    async def authenticate(self, token: str | None, scope: str) -> ApiKey:
        if token is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        if self.service_tokens is not None:
            from untrace_server.control.jwt import looks_like_jwt

            if looks_like_jwt(token):
                return await self._admit(self.service_tokens.verify(token), scope, False)
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
        return await self._admit(key, scope, True)

    async def _admit(self, key: ApiKey, scope: str, record_use: bool) -> ApiKey:
        context = current_context()
        if key.ip_allowlist and not ip_allowed(
            context.client_ip if context else None, key.ip_allowlist
        ):
            raise Forbidden("this API key is not allowed from this address")
        if not key.allows(scope):
            raise Forbidden(f"API key lacks the {scope!r} scope")
        if self.limiter is not None:
            await self.limiter.hit_request(key)
        if context is not None:
            context.key_id = key.id
        if record_use:
            self.last_used[key.id] = time.time()  # written lazily by flush_last_used
        return key

    async def flush_last_used(self) -> None:
        used, self.last_used = self.last_used, {}
        await self.store.touch_keys(used)
