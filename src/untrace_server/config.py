"""One typed Settings object, built once at start and passed down.

Sources, strongest first: command-line flags, ``UNTRACE_*`` environment variables
(nested sections with ``__``: ``UNTRACE_DELIVERY__MAX_ATTEMPTS=5``), the YAML file given
by ``--config`` / ``UNTRACE_CONFIG``, then defaults. Every field has a default, so zero
config runs the single-node mode. No other module reads ``os.environ``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from untrace_server.errors import ConfigError
from untrace_server.ingest.config import ReceiversConfig
from untrace_server.proxy.config import CustomerProxyConfig, ProxyConfig

__all__ = [
    "CustomerConfig",
    "DeliveryConfig",
    "DestinationSpec",
    "EgressConfig",
    "IngestConfig",
    "QueueConfig",
    "SecurityConfig",
    "Settings",
    "TracingConfig",
    "load_settings",
    "parse_duration",
]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Section(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class QueueConfig(_Section):
    url: str = "sqlite://"
    synchronous: str = pydantic.Field("FULL", pattern="^(?i)(FULL|NORMAL|EXTRA)$")
    budget_bytes: int = pydantic.Field(1 << 30, gt=0)
    retention_days: float = pydantic.Field(7.0, ge=0)


class IngestConfig(_Section):
    max_traces_per_request: int = pydantic.Field(1000, gt=0)
    max_body_bytes: int = pydantic.Field(10 * 1024 * 1024, gt=0)
    max_trace_bytes: int = pydantic.Field(1024 * 1024, gt=0)
    # a trace over max_trace_bytes: cut its longest strings to fit (marked), or refuse it
    oversized_traces: Literal["truncate", "reject"] = "truncate"


class DeliveryConfig(_Section):
    max_batch: int = pydantic.Field(100, gt=0)
    max_batch_bytes: int = pydantic.Field(4 * 1024 * 1024, gt=0)
    max_wait_s: float = pydantic.Field(0.5, ge=0)
    backoff_initial_s: float = pydantic.Field(1.0, gt=0)
    backoff_multiplier: float = pydantic.Field(2.0, ge=1)
    backoff_max_s: float = pydantic.Field(300.0, gt=0)
    jitter: float = pydantic.Field(0.1, ge=0, le=1)
    max_attempts: int = pydantic.Field(10, gt=0)
    breaker_failures: int = pydantic.Field(5, gt=0)
    breaker_reset_s: float = pydantic.Field(30.0, gt=0)
    visibility_s: float = pydantic.Field(120.0, gt=0)
    send_timeout_s: float = pydantic.Field(30.0, gt=0)
    # the most of queue.budget_bytes one destination's outbox may hold (1: no limit)
    max_backlog_share: float = pydantic.Field(0.5, gt=0, le=1)


class WorkerConfig(_Section):
    batch: int = pydantic.Field(256, gt=0)
    visibility_s: float = pydantic.Field(60.0, gt=0)


class EgressConfig(_Section):
    """Where destinations may connect (destinations/egress.py)."""

    block_link_local: bool = True  # 169.254.0.0/16 and friends: cloud metadata services
    block_private_networks: bool = False  # loopback, RFC 1918, ULA: on for multi-tenant
    deny_cidrs: list[str] = pydantic.Field(default_factory=list)
    allow_cidrs: list[str] = pydantic.Field(default_factory=list)  # exceptions to the above


class TracingConfig(_Section):
    """Untrace's own spans (observability/tracing.py), sent with OTLP/HTTP."""

    endpoint: str | None = None  # e.g. http://collector:4318/v1/traces; unset: off
    headers: dict[str, str] = pydantic.Field(default_factory=dict)
    sample_ratio: float = pydantic.Field(1.0, ge=0, le=1)
    service_name: str = "untrace"


class SecurityConfig(_Section):
    """Keys, service tokens, network allowlists, rate limits and secrets at rest."""

    previous_master_keys: list[str] = pydantic.Field(default_factory=list)  # for rotation
    trusted_proxies: list[str] = pydantic.Field(default_factory=list)  # CIDRs for X-F-F
    default_requests_per_s: int | None = pydantic.Field(None, gt=0)
    default_traces_per_s: int | None = pydantic.Field(None, gt=0)
    rate_limit_storage: str = "memory://"  # or async+redis://host:6379
    jwt_secret: str | None = None  # HS256 service tokens; None disables JWT
    jwt_audience: str = "untrace"
    jwt_issuers: list[str] = pydantic.Field(default_factory=list)  # empty: any issuer
    encrypt_fields: list[str] = pydantic.Field(default_factory=list)  # metadata.user_email
    tls_cert: str | None = None
    tls_key: str | None = None
    egress: EgressConfig = pydantic.Field(default_factory=EgressConfig)


class DestinationSpec(_Section):
    id: str
    type: str
    enabled: bool = True
    config: dict[str, Any] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.', '-'")
        return value


class CustomerConfig(_Section):
    destinations: list[DestinationSpec] = pydantic.Field(default_factory=list)
    routing: dict[str, Any] = pydantic.Field(default_factory=dict)
    proxy: CustomerProxyConfig = pydantic.Field(default_factory=CustomerProxyConfig)

    @pydantic.model_validator(mode="after")
    def _check_ids(self) -> CustomerConfig:
        ids = [d.id for d in self.destinations]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate destination ids: {', '.join(dupes)}")
        unknown = [d for d in self.routing.get("defaultDestinations", []) if d not in ids]
        if unknown:
            raise ValueError(f"routing.defaultDestinations names unknown destinations: {unknown}")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="UNTRACE_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    config_file: str | None = None  # set by load_settings: the YAML file, for hot reload
    host: str = "127.0.0.1"
    port: int = pydantic.Field(8080, ge=0, le=65535)
    data_dir: Path = Path(".untrace")
    role: str = pydantic.Field("all", pattern="^(all|api|worker)$")
    log_level: str = "info"
    log_json: bool = False
    bootstrap_admin_key: str | None = None
    secret_key: str | None = None  # HMAC key for API-key hashes; generated into data_dir if unset
    master_key: str | None = None  # base64 AES-256 key for secrets; else <data_dir>/master.keys
    database_url: str = ""  # default: sqlite in data_dir
    shutdown_grace_s: float = pydantic.Field(10.0, gt=0)
    queue: QueueConfig = pydantic.Field(default_factory=QueueConfig)
    ingest: IngestConfig = pydantic.Field(default_factory=IngestConfig)
    delivery: DeliveryConfig = pydantic.Field(default_factory=DeliveryConfig)
    worker: WorkerConfig = pydantic.Field(default_factory=WorkerConfig)
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_base_url: str = "https://api.anthropic.com/v1"
    proxy: ProxyConfig = pydantic.Field(default_factory=ProxyConfig)
    # model → {input, output, cached_input} USD per 1M tokens, over the bundled table
    pricing: dict[str, Any] = pydantic.Field(default_factory=dict)
    receivers: ReceiversConfig = pydantic.Field(default_factory=ReceiversConfig)
    customers: dict[str, CustomerConfig] = pydantic.Field(default_factory=dict)
    security: SecurityConfig = pydantic.Field(default_factory=SecurityConfig)
    tracing: TracingConfig = pydantic.Field(default_factory=TracingConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'control.db'}"


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from the YAML file (if any), the environment and ``overrides``.
    Raises ConfigError with one readable line on any problem."""
    path = config_path or os.environ.get("UNTRACE_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        file_values = loaded or {}
    env_keys = {
        key[len("UNTRACE_") :].split("__")[0].lower()
        for key in os.environ
        if key.startswith("UNTRACE_")
    }
    # the file is the weakest source: drop keys the environment sets, let flags win
    init = {k: v for k, v in file_values.items() if k not in env_keys}
    init["config_file"] = str(path) if path else None
    init.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**init)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"invalid setting {where}: {err['msg']}{more}") from None


_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")


def parse_duration(text: str) -> float:
    """'30d' → seconds. Units s, m, h, d, w."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ConfigError(f"bad duration {text!r}: use a number and one of s, m, h, d, w")
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return int(match.group(1)) * scale
