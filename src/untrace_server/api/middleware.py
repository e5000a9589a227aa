"""Request metrics: ``untrace_api_requests_total`` and ``untrace_api_latency_seconds``,
labelled by the route's path template (never the raw path: bounded label values); and,
with self-tracing on, a SERVER span per request (observability/tracing.py)."""

from __future__ import annotations

import time

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from untrace_server.observability import metrics, tracing

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
        if tracing.enabled():
            await self._traced(scope, receive, send)
            return
        await self._measured(scope, receive, send)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        with tracing.tracer.start_as_current_span(
            scope["method"],
            context=tracing.extract_context(scope["headers"]),  # type: ignore[arg-type]
            kind=SpanKind.SERVER,
            attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
        ) as span:
            status = await self._measured(scope, receive, send)
            endpoint = self._endpoint(scope)
            span.update_name(f"{scope['method']} {endpoint}")
            span.set_attribute("http.route", endpoint)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))

    async def _measured(self, scope: Scope, receive: Receive, send: Send) -> int:
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
        return status
