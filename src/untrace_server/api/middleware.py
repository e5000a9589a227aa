"""Request metrics: ``untrace_api_requests_total`` and ``untrace_api_latency_seconds``,
labelled by the route's path template (never the raw path: bounded label values)."""

from __future__ import annotations

import time

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from untrace_server.observability import metrics

__all__ = ["MetricsMiddleware"]


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates: dict[str, str] = {}

    def _endpoint(self, scope: Scope) -> str:
        path: str = scope["path"]
        cached = self._templates.get(path)
        if cached is not None:
            return cached
        template = "other"
        for route in scope["app"].router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                template = getattr(route, "path", "other")
                break
        if len(self._templates) < 1000 and "{" not in template:
            self._templates[path] = template
        return template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            endpoint = self._endpoint(scope)
            method = scope["method"]
            metrics.API_REQUESTS.labels(method, endpoint, str(status)).inc()
            metrics.API_LATENCY.labels(method, endpoint).observe(time.perf_counter() - started)
