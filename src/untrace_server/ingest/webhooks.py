"""``POST /api/v1/webhooks/{source}``: any JSON webhook → Traces.

A source configured under ``receivers.webhooks.<source>`` maps the body with JSONPaths
(Trace field ← path; ``items`` splits a body into several traces) and may require an
HMAC-SHA256 signature of the raw body (``<header>: <hex>`` or ``sha256=<hex>``). The
built-in ``raw`` source keeps the whole body under ``metadata.webhookBody``. Auth is
the Untrace key as for native ingest; the signature is checked in addition.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from untrace_server import model
from untrace_server.control.auth import Authenticator, bearer_token
from untrace_server.errors import ConfigError, InvalidPayload, NotFound, Unauthorized
from untrace_server.ingest.base import TraceSink, read_body
from untrace_server.ingest.config import WebhookSourceConfig

if TYPE_CHECKING:
    from untrace_server.app import Components

__all__ = ["WebhookReceiver", "build_receiver", "compile_path"]

_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(-?\d+)\]|\[['\"]([^'\"]+)['\"]\]")
_TOP = {
    "start_time": "startTime",
    "end_time": "endTime",
    "parent_id": "parentId",
    "session_id": "sessionId",
}
Steps = tuple[str | int, ...]


def compile_path(text: str) -> Steps:
    """``$.a.b[0]['c d']`` → ('a', 'b', 0, 'c d'); ConfigError when not of that form."""
    if not text.startswith("$"):
        raise ConfigError(f"webhook JSONPath {text!r} must start with '$'")
    steps: list[str | int] = []
    pos = 1
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            raise ConfigError(f"webhook JSONPath {text!r}: cannot read {text[pos:]!r}")
        steps.append(int(m.group(2)) if m.group(2) is not None else m.group(1) or m.group(3))
        pos = m.end()
    return tuple(steps)


def _get(value: Any, steps: Steps) -> Any:
    for step in steps:
        if isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict):
            value = value.get(step)
        else:
            return None
    return value


def _ms(value: Any) -> Any:
    if isinstance(value, int | float):
        return int(value * 1000) if value < 1e11 else int(value)
    if isinstance(value, str):
        from datetime import UTC, datetime

        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)
    return value


class Source:
    def __init__(self, name: str, config: WebhookSourceConfig) -> None:
        self.name = name
        self.config = config
        self.items = compile_path(config.items) if config.items else None
        self.fields = []
        for field, path in config.mapping.items():
            parts = field.split(".")
            parts[0] = _TOP.get(parts[0], parts[0])
            self.fields.append((parts, compile_path(path)))

    def verify(self, body: bytes, signature: str | None) -> None:
        if self.config.secret is None:
            return
        secret = self.config.secret.get_secret_value().encode()
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        given = (signature or "").strip().removeprefix("sha256=")
        if not hmac.compare_digest(expected, given.lower()):
            raise Unauthorized(f"missing or bad {self.config.signature_header} signature")

    def trace(self, item: Any, body: Any) -> dict[str, Any]:
        now = model.now_ms()
        out: dict[str, Any] = {"kind": self.config.kind, "metadata": {"webhookSource": self.name}}
        if self.config.provider:
            out["provider"] = self.config.provider
        for parts, steps in self.fields:
            value = _get(item, steps)
            if value is None:
                continue
            if parts[0] in ("startTime", "endTime"):
                value = _ms(value)
            target = out
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
        out.setdefault("startTime", out.get("endTime", now))
        out.setdefault("endTime", out["startTime"])
        if self.config.keep_body or not self.fields:
            out["metadata"]["webhookBody"] = body
        return out


class WebhookReceiver:
    def __init__(
        self, sink: TraceSink, auth: Authenticator, sources: dict[str, Source], max_body_bytes: int
    ) -> None:
        self.sink = sink
        self.auth = auth
        self.sources = sources
        self.max_body_bytes = max_body_bytes

    def routes(self) -> Sequence[BaseRoute]:
        return [Route("/api/v1/webhooks/{source}", self.post, methods=["POST"])]

    async def post(self, request: Request) -> JSONResponse:
        key = await self.auth.authenticate(
            bearer_token(request.headers.get("authorization"))
            or request.headers.get("x-untrace-key"),
            "ingest",
        )
        name = request.path_params["source"]
        source = self.sources.get(name)
        if source is None:
            raise NotFound(f"no webhook source {name!r} is configured (or use 'raw')")
        raw = await read_body(request, self.max_body_bytes)
        source.verify(raw, request.headers.get(source.config.signature_header))
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            if source.fields:
                raise InvalidPayload("webhook body must be JSON") from None
            body = raw.decode(errors="replace")
        items = _get(body, source.items) if source.items is not None else [body]
        if not isinstance(items, list) or not items:
            raise InvalidPayload(f"{source.config.items} selects no list of events", status=422)
        traces, details = [], []
        for index, item in enumerate(items):
            try:
                trace = msgspec.convert(source.trace(item, body), model.Trace)
            except msgspec.ValidationError as exc:
                details.append({"index": index, "field": "$", "problem": str(exc)})
                continue
            details.extend(
                {"index": index, "field": f, "problem": p} for f, p in model.check_trace(trace)
            )
            traces.append(trace)
        if details:
            raise InvalidPayload(
                "the mapped trace is invalid; nothing was accepted", status=422, details=details
            )
        ids = await self.sink.submit(traces, key.customer_id)
        return JSONResponse({"accepted": len(ids), "ids": ids}, status_code=202)


def build_receiver(components: Components) -> WebhookReceiver:
    config = components.settings.receivers
    sources = {"raw": Source("raw", WebhookSourceConfig(kind="chain"))}
    for name, source in config.webhooks.items():
        sources[name] = Source(name, source)
    return WebhookReceiver(
        components.sink, components.auth, sources, components.settings.ingest.max_body_bytes
    )
