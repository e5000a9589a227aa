"""``POST /v1/traces``: the OTLP/HTTP traces receiver (protobuf and JSON, gzip).

Point any OTel exporter at the server's base URL and pass the Untrace key in
``OTEL_EXPORTER_OTLP_HEADERS`` as ``Authorization=Bearer <key>`` or ``x-untrace-key=<key>``.
Mapping and response semantics: ``_otlp_map`` and ``_otlp_http``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from untrace_server.control.auth import Authenticator, bearer_token
from untrace_server.errors import IngestError
from untrace_server.ingest._otlp_http import PROTOBUF, OtlpHandler

if TYPE_CHECKING:
    from untrace_server.app import Components

__all__ = ["OtlpReceiver", "build_receiver"]


class OtlpReceiver:
    def __init__(self, handler: OtlpHandler, auth: Authenticator) -> None:
        self.handler = handler
        self.auth = auth

    def routes(self) -> Sequence[BaseRoute]:
        return [Route("/v1/traces", self.post_traces, methods=["POST"])]

    async def post_traces(self, request: Request) -> Response:
        token = bearer_token(request.headers.get("authorization")) or request.headers.get(
            "x-untrace-key"
        )
        try:
            key = await self.auth.authenticate(token, "ingest")
        except IngestError as exc:
            media = self.handler.media(request) or PROTOBUF
            retry = float(exc.headers.get("Retry-After", 1)) if exc.status == 429 else None
            return self.handler.error(media, exc.status, exc.message, retry)
        return await self.handler.handle(request, key.customer_id)


def build_receiver(components: Components) -> OtlpReceiver:
    config = components.settings.receivers
    return OtlpReceiver(OtlpHandler(components.sink, config.otlp_max_body_bytes), components.auth)
