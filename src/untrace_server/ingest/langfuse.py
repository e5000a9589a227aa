"""Langfuse-compatible ingestion under ``/langfuse``: set the SDK's host to
``http://host:8080/langfuse`` and its secret key to an Untrace key (any public key).

- ``POST /langfuse/api/public/otel/v1/traces``: OTLP/HTTP as the v3+ SDKs send it; the
  ``langfuse.*`` attributes map as in ``_otlp_map`` (same handler as ``/v1/traces``).
- ``POST /langfuse/api/public/ingestion``: the legacy JSON batch; 207 with
  ``{"successes": [{id, status: 201}], "errors": [{id, status, message}]}`` once the
  accepted events are durable; 400 for a malformed envelope.
Auth: ``Authorization: Basic base64(<public key>:<untrace key>)`` (Bearer also accepted).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from untrace_server.control.auth import Authenticator, bearer_token
from untrace_server.errors import IngestError, InvalidPayload
from untrace_server.ingest._langfuse_events import events_to_traces
from untrace_server.ingest._otlp_http import PROTOBUF, OtlpHandler
from untrace_server.ingest.base import TraceSink, read_body

if TYPE_CHECKING:
    from untrace_server.app import Components

__all__ = ["LangfuseReceiver", "basic_secret", "build_receiver"]

_PREFIX = "/langfuse/api/public"


def basic_secret(authorization: str | None) -> str | None:
    """The password of HTTP Basic credentials (the Langfuse secret key)."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, secret = decoded.partition(":")
    return secret if colon and secret else None


class LangfuseReceiver:
    def __init__(
        self, sink: TraceSink, auth: Authenticator, otlp: OtlpHandler, max_body_bytes: int
    ) -> None:
        self.sink = sink
        self.auth = auth
        self.otlp = otlp
        self.max_body_bytes = max_body_bytes

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route(f"{_PREFIX}/otel/v1/traces", self.post_otel, methods=["POST"]),
            Route(f"{_PREFIX}/ingestion", self.post_ingestion, methods=["POST"]),
        ]

    async def _customer(self, request: Request) -> str:
        header = request.headers.get("authorization")
        token = basic_secret(header) or bearer_token(header) or request.headers.get("x-untrace-key")
        return (await self.auth.authenticate(token, "ingest")).customer_id

    async def post_otel(self, request: Request) -> Response:
        try:
            customer = await self._customer(request)
        except IngestError as exc:
            return self.otlp.error(self.otlp.media(request) or PROTOBUF, exc.status, exc.message)
        return await self.otlp.handle(request, customer)

    async def post_ingestion(self, request: Request) -> JSONResponse:
        customer = await self._customer(request)
        body = await read_body(request, self.max_body_bytes)
        try:
            top = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise InvalidPayload(f"malformed JSON: {exc}") from None
        batch = top.get("batch") if isinstance(top, dict) else None
        if not isinstance(batch, list) or not all(isinstance(e, dict) for e in batch):
            raise InvalidPayload('body must be {"batch": [event, ...]}')
        traces, ok, errors = events_to_traces(batch)
        if traces:
            await self.sink.submit(traces, customer)
        result: dict[str, Any] = {
            "successes": [{"id": i, "status": 201} for i in ok],
            "errors": [{"id": i, "status": s, "message": m, "error": m} for i, s, m in errors],
        }
        return JSONResponse(result, status_code=207)


def build_receiver(components: Components) -> LangfuseReceiver:
    config = components.settings.receivers
    otlp = OtlpHandler(components.sink, config.otlp_max_body_bytes)
    return LangfuseReceiver(
        components.sink, components.auth, otlp, components.settings.ingest.max_body_bytes
    )
