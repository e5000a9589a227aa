"""Settings of the compatibility receivers (the ``receivers`` section).

```yaml
receivers:
  otlp_max_body_bytes: 20971520          # the OTLP spec's recommended limit
  langsmith_open_run_timeout_s: 600      # an unpatched run is forwarded as partial after this
  webhooks:
    acme:                                # POST /api/v1/webhooks/acme
      secret: "s3cret"                   # optional HMAC-SHA256 over the raw body
      signature_header: X-Signature      # hex digest, optionally "sha256=<hex>"
      kind: llm
      mapping:                           # Trace field ← JSONPath into the body
        id: $.event_id
        model: $.data.model
        request.prompt: $.data.input
        response.content: $.data.output
        response.usage.prompt_tokens: $.data.usage.in
```
"""

from __future__ import annotations

import pydantic

__all__ = ["ReceiversConfig", "WebhookSourceConfig"]


class WebhookSourceConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    mapping: dict[str, str] = pydantic.Field(default_factory=dict)
    secret: pydantic.SecretStr | None = None
    signature_header: str = "X-Untrace-Signature"
    # the JSONPath that selects a list of events in the body; each becomes one trace
    items: str | None = None
    kind: str = "llm"
    provider: str | None = None
    keep_body: bool = False  # also keep the whole body under metadata.webhookBody


class ReceiversConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    otlp_max_body_bytes: int = pydantic.Field(20 * 1024 * 1024, gt=0)
    langsmith_max_body_bytes: int = pydantic.Field(20 * 1024 * 1024, gt=0)
    langsmith_open_run_timeout_s: float = pydantic.Field(600.0, gt=0)
    langsmith_sweep_interval_s: float = pydantic.Field(5.0, gt=0)
    webhooks: dict[str, WebhookSourceConfig] = pydantic.Field(default_factory=dict)
