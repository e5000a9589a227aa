"""Encoding and one POST of a batch to the server.

``classify`` is the only place where an HTTP status or an httpx error becomes one of
three outcomes the worker acts on:

    SENT       2xx
    RETRY      429, 5xx, network errors, timeouts      (honour Retry-After)
    SPLIT      400/413/422 on a batch of more than one trace: send the halves, so one bad
               trace does not take its neighbours down with it
    DROP       everything else, counted with a reason: "unauthorized" (401/403),
               "rejected" (other 4xx, or 400/413/422 on a single trace)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import email.utils
import enum
import gzip
import json
import time
from collections.abc import Sequence
from typing import Any

import httpx

__all__ = ["Outcome", "Result", "Sender", "encode_trace"]

_MAX_REPR = 2000


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    SPLIT = "split"
    DROP = "drop"


@dataclasses.dataclass(slots=True)
class Result:
    outcome: Outcome
    reason: str = ""
    retry_after: float | None = None
    detail: str = ""


def _fallback(value: Any) -> Any:
    """JSON for what ``json`` cannot encode: pydantic models, dataclasses, sets, bytes,
    datetimes; anything else becomes a (bounded) repr."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", exclude_none=True)
        except Exception:
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "…"


_encoder = json.JSONEncoder(
    default=_fallback, ensure_ascii=False, separators=(",", ":"), allow_nan=False
)


def encode_trace(trace: dict[str, Any]) -> bytes:
    return _encoder.encode(trace).encode()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(status: int, batch_size: int) -> tuple[Outcome, str]:
    if 200 <= status < 300:
        return Outcome.SENT, ""
    if status == 429 or status >= 500:
        return Outcome.RETRY, f"http_{status}"
    if status in (401, 403):
        return Outcome.DROP, "unauthorized"
    if status in (400, 413, 422) and batch_size > 1:
        return Outcome.SPLIT, f"http_{status}"
    return Outcome.DROP, "rejected"


class Sender:
    """Owns the httpx client (one per process: the worker makes a new one after fork)."""

    PATH = "/api/v1/traces"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        compress: bool,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._compress = compress
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "User-Agent": "untrace-python/0.1.0",
            },
        )

    def send(self, encoded: Sequence[bytes], timeout: float | None = None) -> Result:
        body = b'{"traces":[' + b",".join(encoded) + b"]}"
        headers = {}
        if self._compress:
            body = gzip.compress(body, compresslevel=5, mtime=0)
            headers["Content-Encoding"] = "gzip"
        limit = self._timeout if timeout is None else max(0.05, min(timeout, self._timeout))
        try:
            response = self._http.post(self.PATH, content=body, headers=headers, timeout=limit)
        except httpx.TransportError as exc:
            return Result(Outcome.RETRY, "network", detail=type(exc).__name__)
        outcome, reason = classify(response.status_code, len(encoded))
        detail = "" if outcome is Outcome.SENT else response.text[:300]
        return Result(outcome, reason, _retry_after(response), detail)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._http.close()
