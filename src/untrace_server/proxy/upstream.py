"""The upstream client: one pooled keep-alive aiohttp session, a circuit breaker per
upstream, connect/read timeouts, and retries only for failures to connect.

aiohttp rather than httpx: on the proxy path it costs a fraction of httpx's CPU per
request (bench/proxy/clients.py measures both; docs/benchmarks.md has the numbers).
This module is the one place aiohttp's exceptions become the proxy's (``errors.py``).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import aiohttp
import yarl

from untrace_server.delivery.breaker import CircuitBreaker
from untrace_server.proxy.config import ProxyConfig
from untrace_server.proxy.errors import (
    BreakerOpen,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = ["UpstreamPool", "map_read_error"]

log = logging.getLogger("untrace.proxy")

# aiohttp adds these unless told not to; the proxy sends only what the client sent
_SKIP_AUTO_HEADERS = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})


class UpstreamPool:
    """Sends requests to upstreams named by base URL; one breaker per upstream origin."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._by_base: dict[str, CircuitBreaker] = {}

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=self.config.pool_size,
            keepalive_timeout=self.config.keepalive_s,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # relay the upstream's bytes unchanged
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry state between callers
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.config.connect_timeout_s,
                sock_read=self.config.read_timeout_s,
            ),
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def breaker(self, base_url: str) -> CircuitBreaker:
        """One breaker per upstream origin (scheme://host:port), cached per base URL."""
        breaker = self._by_base.get(base_url)
        if breaker is None:
            parts = urlsplit(base_url)
            origin = f"{parts.scheme}://{parts.netloc}"
            breaker = self._breakers.get(origin)
            if breaker is None:
                breaker = CircuitBreaker(self.config.breaker_failures, self.config.breaker_reset_s)
                self._breakers[origin] = breaker
            self._by_base[base_url] = breaker
        return breaker

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes, base_url: str
    ) -> aiohttp.ClientResponse:
        """The upstream's response, headers read and body not yet; raises UpstreamError."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        breaker = self.breaker(base_url)
        if not breaker.allow():
            wait = max(1.0, breaker.wait_time())
            raise BreakerOpen(f"upstream {base_url} is failing; retry later", retry_after=wait)
        target = yarl.URL(url, encoded=True)
        attempts = self.config.connect_retries + 1
        for attempt in range(attempts):
            try:
                response = await self._session.request(
                    method,
                    target,
                    headers=headers,
                    data=body or None,
                    skip_auto_headers=_SKIP_AUTO_HEADERS,
                    allow_redirects=False,
                )
            except aiohttp.ClientConnectorError as exc:  # nothing was sent: safe to retry
                if attempt + 1 < attempts:
                    continue
                raise self._failed(breaker, UpstreamUnavailable(_describe(exc, base_url))) from exc
            except aiohttp.ConnectionTimeoutError:  # connect timed out: nothing sent
                if attempt + 1 < attempts:
                    continue
                raise self._failed(
                    breaker, UpstreamTimeout(f"connecting to {base_url} timed out")
                ) from None
            except TimeoutError:
                raise self._failed(
                    breaker, UpstreamTimeout(f"upstream {base_url} did not answer in time")
                ) from None
            except aiohttp.ClientError as exc:
                raise self._failed(breaker, UpstreamUnavailable(_describe(exc, base_url))) from exc
            breaker.record_success()
            return response
        raise AssertionError("unreachable")

    def _failed(self, breaker: CircuitBreaker, error: UpstreamError) -> UpstreamError:
        was_open = not breaker.allow()
        breaker.record_failure()
        if not was_open and not breaker.allow():  # log transitions, not every request
            log.warning("proxy: circuit opened for an upstream: %s", error.message)
        return error


def map_read_error(exc: BaseException, base_url: str) -> UpstreamError:
    """An error while reading an upstream body, as the proxy's error."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"upstream {base_url} stopped sending in time")
    return UpstreamUnavailable(_describe(exc, base_url))


def _describe(exc: BaseException, base_url: str) -> str:
    text = str(exc) or type(exc).__name__
    return f"upstream {base_url} unreachable: {text}"
