"""``otlp``: a generic OTLP/HTTP trace exporter (protobuf by default, JSON optional, gzip)
for any collector, Jaeger, Tempo, Honeycomb — with GenAI or OpenInference attributes and
presets for Phoenix, MLflow, Braintrust and W&B Weave."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import pydantic

from untrace_server.destinations._batching import deliver
from untrace_server.destinations._connector import HttpConfig, HttpConnector
from untrace_server.destinations._ids import lineage
from untrace_server.destinations._otlp_attrs import FLAVOURS
from untrace_server.destinations._otlp_encode import encode_span, export_request, to_json
from untrace_server.destinations.base import BatchResult, HealthStatus
from untrace_server.errors import DeliveryError, PermanentError
from untrace_server.model import Trace

__all__ = ["OtlpDestination"]

Preset = Literal["none", "phoenix", "mlflow", "braintrust", "weave"]
_DEFAULT_ENDPOINTS = {
    "phoenix": "http://127.0.0.1:6006/v1/traces",
    "braintrust": "https://api.braintrust.dev/otel/v1/traces",
    "weave": "https://trace.wandb.ai/otel/v1/traces",
}


class OtlpConfig(HttpConfig):
    preset: Preset = "none"
    # Full traces URL; a bare base URL (no path) gets ``/v1/traces`` appended.
    endpoint: pydantic.AnyHttpUrl | None = None
    encoding: Literal["protobuf", "json"] = "protobuf"
    compression: Literal["gzip", "none"] = "gzip"
    flavour: Literal["genai", "openinference", "mlflow"] | None = None
    api_key: pydantic.SecretStr | None = None
    project: str | None = None  # phoenix project, braintrust project, weave entity/project
    experiment_id: str | None = None  # mlflow
    service_name: str = "untrace"
    max_batch_count: int = pydantic.Field(512, ge=1, le=10_000)

    @pydantic.model_validator(mode="after")
    def _check_preset(self) -> OtlpConfig:
        p = self.preset
        if self.endpoint is None and p not in _DEFAULT_ENDPOINTS:
            raise ValueError(f"endpoint is required for preset {p!r}")
        if p == "phoenix" and self.encoding != "protobuf":
            raise ValueError(f"{p} accepts OTLP protobuf only; remove encoding: json")
        if p == "mlflow" and not self.experiment_id:
            raise ValueError("experiment_id is required for preset 'mlflow'")
        if p in ("braintrust", "weave") and self.api_key is None:
            raise ValueError(f"api_key is required for preset {p!r}")
        if p in ("braintrust", "weave") and not self.project:
            raise ValueError(f"project is required for preset {p!r}")
        if p == "weave" and "/" not in (self.project or ""):
            raise ValueError("project must be 'entity/project' for preset 'weave'")
        return self

    def url(self) -> str:
        url = str(self.endpoint or _DEFAULT_ENDPOINTS[self.preset])
        return url.rstrip("/") + "/v1/traces" if urlsplit(url).path in ("", "/") else url

    def attribute_flavour(self) -> str:
        if self.flavour:
            return self.flavour
        return {"phoenix": "openinference", "mlflow": "mlflow"}.get(self.preset, "genai")


class OtlpDestination(HttpConnector):
    Config = OtlpConfig
    what = "OTLP endpoint"

    config: OtlpConfig

    def client_headers(self) -> dict[str, str]:
        c = self.config
        key = c.api_key.get_secret_value() if c.api_key else None
        headers: dict[str, str] = {}
        if c.preset == "phoenix":
            headers["x-project-name"] = c.project or "default"
        elif c.preset == "mlflow":
            headers["x-mlflow-experiment-id"] = c.experiment_id or ""
        elif c.preset == "braintrust":
            headers["x-bt-parent"] = f"project_name:{c.project}"
        elif c.preset == "weave":
            headers["project_id"] = c.project or ""
            token = base64.b64encode(f"api:{key}".encode()).decode()
            headers["authorization"], key = f"Basic {token}", None
        if key:
            headers["authorization"] = f"Bearer {key}"
        headers["content-type"] = (
            "application/x-protobuf" if c.encoding == "protobuf" else "application/json"
        )
        if c.compression == "gzip":
            headers["content-encoding"] = "gzip"
        return headers

    def resource(self, trace: Trace) -> tuple[tuple[str, str], ...]:
        attrs = {
            "service.name": str(trace.metadata.get("applicationId") or self.config.service_name)
        }
        for key, name in (
            ("environment", "deployment.environment.name"),
            ("version", "service.version"),
        ):
            if isinstance(value := trace.metadata.get(key), str) and value:
                attrs[name] = value
        if self.config.preset == "phoenix":
            attrs["openinference.project.name"] = self.config.project or "default"
        return tuple(attrs.items())

    def body(self, spans: Sequence[Any]) -> bytes:
        request = export_request(spans)
        raw = (
            request.SerializeToString() if self.config.encoding == "protobuf" else to_json(request)
        )
        return gzip.compress(raw, compresslevel=5) if self.config.compression == "gzip" else raw

    async def send_batch(self, traces: Sequence[Trace]) -> BatchResult:
        flavour = FLAVOURS[self.config.attribute_flavour()]
        tree = lineage(traces)
        spans: list[Any] = []
        failed: dict[int, DeliveryError] = {}
        for i, trace in enumerate(traces):
            try:
                span = encode_span(trace, tree, flavour, self.config.max_field_bytes)
                spans.append((self.resource(trace), span))
            except (ValueError, TypeError) as exc:
                failed[i] = PermanentError(f"cannot encode trace {trace.id!r}: {exc}")
                spans.append(None)
        sizes = [s[1].ByteSize() if s else 0 for s in spans]

        async def send(group: list[int]) -> None:
            await self.request(
                "POST", self.config.url(), content=self.body([spans[i] for i in group])
            )

        return await deliver(
            sizes,
            send,
            max_count=self.config.max_batch_count,
            max_bytes=self.config.max_batch_bytes,
            failed=failed,
        )

    async def health_check(self) -> HealthStatus:
        """An empty export: collectors answer 200; some (MLflow) 400 — both reachable."""
        return await self.probe("POST", self.config.url(), content=self.body([]))
