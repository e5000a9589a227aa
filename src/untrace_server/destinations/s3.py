"""``s3``: gzipped JSON Lines objects in S3 or any S3-compatible store (MinIO, R2, GCS
interop), one object per partition ``customer=<id>/date=YYYY-MM-DD/hour=HH``. The object
key is derived from the trace ids it holds, so a redelivery overwrites the same object.

The client is boto3 (AWS's own SDK), called from worker threads: botocore's own retries
are off because retrying is ``delivery/``'s job. Its errors are mapped in ``_map_errors``.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pydantic

from untrace_server.destinations._batching import deliver
from untrace_server.destinations._http import PayloadTooLarge
from untrace_server.destinations.base import (
    BatchResult,
    DestinationConfig,
    DestinationContext,
    HealthStatus,
    classify_http_status,
)
from untrace_server.errors import (
    DeliveryError,
    PartialDeliveryError,
    PermanentError,
    RetryableError,
)
from untrace_server.model import Trace, encode

__all__ = ["S3Destination"]


class S3Config(DestinationConfig):
    bucket: str = pydantic.Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]+$")
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: pydantic.AnyHttpUrl | None = None  # S3-compatible stores
    access_key_id: str | None = None  # None: boto3's default credential chain
    secret_access_key: pydantic.SecretStr | None = None
    path_style: bool = False
    timeout_s: float = pydantic.Field(30.0, gt=0, le=600)
    max_batch_count: int = pydantic.Field(1000, ge=1, le=100_000)
    max_batch_bytes: int = pydantic.Field(64 * 1024 * 1024, ge=1024)

    @pydantic.model_validator(mode="after")
    def _pair(self) -> S3Config:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key go together")
        return self


@contextmanager
def _map_errors(what: str) -> Iterator[None]:
    """The one place botocore's exceptions become delivery errors."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        meta = exc.response.get("ResponseMetadata", {})
        error = exc.response.get("Error", {})
        if meta.get("HTTPStatusCode") == 413 or error.get("Code") == "EntityTooLarge":
            raise PayloadTooLarge(f"{what}: object too large") from exc
        classify_http_status(
            int(meta.get("HTTPStatusCode") or 500),
            body=f"{error.get('Code')}: {error.get('Message')}",
            retry_after=meta.get("HTTPHeaders", {}).get("retry-after"),
            what=what,
        )
        raise PermanentError(f"{what}: {exc}") from exc  # a 2xx ClientError: unexpected
    except (
        botocore.exceptions.NoCredentialsError,
        botocore.exceptions.PartialCredentialsError,
    ) as exc:
        raise PermanentError(f"{what}: {exc}") from exc
    except (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectionError,
        botocore.exceptions.HTTPClientError,
    ) as exc:
        raise RetryableError(f"{what}: {exc}") from exc


def partition(trace: Trace, customer: str) -> str:
    when = datetime.fromtimestamp(trace.start_time / 1000, tz=UTC)
    return f"customer={customer}/date={when:%Y-%m-%d}/hour={when:%H}"


class S3Destination:
    Config = S3Config

    def __init__(self, config: S3Config, context: DestinationContext) -> None:
        self.config = config
        self.context = context
        self._client: Any = None

    async def start(self) -> None:
        if self._client is not None:
            return
        c = self.config
        options = botocore.config.Config(
            region_name=c.region,
            connect_timeout=min(c.timeout_s, 10),
            read_timeout=c.timeout_s,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=16,
            s3={"addressing_style": "path" if c.path_style else "auto"},
        )
        secret = c.secret_access_key.get_secret_value() if c.secret_access_key else None
        self._client = await asyncio.to_thread(
            boto3.session.Session().client,
            "s3",
            config=options,
            endpoint_url=str(c.endpoint_url) if c.endpoint_url else None,
            aws_access_key_id=c.access_key_id,
            aws_secret_access_key=secret,
        )

    async def shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    async def _call(self, method: str, **kwargs: Any) -> Any:
        if self._client is None:
            raise RetryableError("S3: connector not started")
        endpoint = self.config.endpoint_url
        if endpoint is not None and self.context.egress is not None:
            # botocore connects by itself: check the endpoint's addresses before each call
            await self.context.egress.resolve(endpoint.host or "", endpoint.port or 443)
        with _map_errors(f"S3 bucket {self.config.bucket!r}"):
            return await asyncio.to_thread(getattr(self._client, method), **kwargs)

    def key(self, part: str, traces: Sequence[Trace]) -> str:
        digest = hashlib.sha256("\x1f".join(t.id for t in traces).encode()).hexdigest()[:24]
        name = f"{part}/{self.context.destination_id}-{digest}.jsonl.gz"
        prefix = self.config.prefix.strip("/")
        return f"{prefix}/{name}" if prefix else name

    async def send_batch(self, traces: Sequence[Trace]) -> BatchResult:
        lines = [encode(t) + b"\n" for t in traces]

        async def send(group: list[int]) -> None:
            parts: dict[str, list[int]] = {}
            for i in group:
                customer = traces[i].customer_id or self.context.customer_id
                parts.setdefault(partition(traces[i], customer), []).append(i)
            failed: dict[int, DeliveryError] = {}
            for part, members in parts.items():
                body = gzip.compress(b"".join(lines[i] for i in members), 6, mtime=0)
                try:
                    await self._call(
                        "put_object",
                        Bucket=self.config.bucket,
                        Key=self.key(part, [traces[i] for i in members]),
                        Body=body,
                        ContentType="application/x-ndjson",
                        ContentEncoding="gzip",
                    )
                except DeliveryError as exc:
                    failed.update({group.index(i): exc for i in members})
            if failed and len(failed) == len(group):
                raise next(iter(failed.values()))
            if failed:
                raise PartialDeliveryError(f"{len(failed)} traces not stored", failed)

        return await deliver(
            [len(line) for line in lines],
            send,
            max_count=self.config.max_batch_count,
            max_bytes=self.config.max_batch_bytes,
        )

    async def health_check(self) -> HealthStatus:
        try:
            await self._call("head_bucket", Bucket=self.config.bucket)
        except DeliveryError as exc:
            return HealthStatus(False, str(exc))
        return HealthStatus(True, f"bucket {self.config.bucket!r} reachable")
