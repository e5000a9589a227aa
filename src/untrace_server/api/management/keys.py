"""``/api/v1/keys``: create (the key is shown once), list, read, revoke, rotate."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import pydantic
from fastapi import APIRouter, Path, Request, Response

from untrace_server.api.management.deps import Read, Write, components
from untrace_server.control.keys import ApiKey, generate_key
from untrace_server.control.netallow import parse_networks
from untrace_server.errors import Forbidden, NotFound

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])

Scope = Literal["ingest", "proxy", "read", "write", "admin"]
_INGEST: Scope = "ingest"
KeyId = Annotated[str, Path(max_length=64)]


class KeyCreate(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = pydantic.Field("", max_length=200)
    scopes: list[Scope] = pydantic.Field(default_factory=lambda: [_INGEST], min_length=1)
    expires_in_s: int | None = pydantic.Field(None, gt=0, le=10 * 365 * 86400)
    metadata: dict[str, str] = pydantic.Field(default_factory=dict, max_length=50)
    requests_per_s: int | None = pydantic.Field(None, gt=0, le=1_000_000)
    traces_per_s: int | None = pydantic.Field(None, gt=0, le=10_000_000)
    ip_allowlist: list[str] = pydantic.Field(default_factory=list, max_length=100)

    @pydantic.field_validator("ip_allowlist")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        try:
            parse_networks(value)
        except ValueError as exc:
            raise ValueError(f"not a CIDR: {exc}") from None
        return value


class KeyRotate(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    overlap_s: int = pydantic.Field(3600, ge=0, le=30 * 86400)


class KeyInfo(pydantic.BaseModel):
    id: str
    customer: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: float
    last_used_at: float | None
    expires_at: float | None
    revoked_at: float | None
    metadata: dict[str, str]
    requests_per_s: int | None
    traces_per_s: int | None
    ip_allowlist: list[str]


class KeyCreated(KeyInfo):
    key: str = pydantic.Field(description="the key itself: shown only in this response")


def info(k: ApiKey, last_used: float | None = None) -> dict[str, Any]:
    return {
        "id": k.id,
        "customer": k.customer_id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": sorted(k.scopes),
        "created_at": k.created_at,
        "last_used_at": max(filter(None, (k.last_used_at, last_used)), default=None),
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
        "metadata": k.metadata,
        "requests_per_s": k.requests_per_s,
        "traces_per_s": k.traces_per_s,
        "ip_allowlist": list(k.ip_allowlist),
    }


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key")
async def create_key(body: KeyCreate, caller: Write, request: Request) -> dict[str, Any]:
    granted = set(body.scopes)
    if not caller.is_admin and not granted <= caller.key.scopes:
        raise Forbidden("a key can only grant scopes it holds itself")
    c = components(request)
    plaintext = generate_key()
    record = await c.store.add_key(
        plaintext,
        customer_id=caller.customer,
        scopes=granted,
        name=body.name,
        expires_at=time.time() + body.expires_in_s if body.expires_in_s else None,
        metadata=body.metadata,
        requests_per_s=body.requests_per_s,
        traces_per_s=body.traces_per_s,
        ip_allowlist=body.ip_allowlist,
    )
    return {**info(record), "key": plaintext}


@router.get("", response_model=list[KeyInfo], summary="List API keys (never the keys)")
async def list_keys(caller: Read, request: Request) -> list[dict[str, Any]]:
    c = components(request)
    used = c.auth.last_used
    return [info(k, used.get(k.id)) for k in await c.store.list_keys(caller.customer)]


async def _own(request: Request, customer: str, key_id: str) -> ApiKey:
    found = await components(request).store.get_key(key_id, customer)
    if found is None:
        raise NotFound(f"key {key_id!r} not found")
    return found


@router.get("/{key_id}", response_model=KeyInfo, summary="Read an API key")
async def get_key(key_id: KeyId, caller: Read, request: Request) -> dict[str, Any]:
    key = await _own(request, caller.customer, key_id)
    return info(key, components(request).auth.last_used.get(key.id))


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key")
async def revoke_key(key_id: KeyId, caller: Write, request: Request) -> Response:
    c = components(request)
    key = await _own(request, caller.customer, key_id)
    await c.store.revoke_key(key.id, caller.customer)
    c.auth.forget(key.id)
    return Response(status_code=204)


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    response_model=KeyCreated,
    summary="Rotate: a new key with the same grants; the old one expires after the overlap",
)
async def rotate_key(
    key_id: KeyId, body: KeyRotate, caller: Write, request: Request
) -> dict[str, Any]:
    c = components(request)
    old = await _own(request, caller.customer, key_id)
    if old.revoked_at is not None or old.expired(time.time()):
        raise NotFound(f"key {key_id!r} is no longer active")
    if not caller.is_admin and not old.scopes <= caller.key.scopes:
        raise Forbidden("a key can only grant scopes it holds itself")
    plaintext = generate_key()
    new = await c.store.add_key(
        plaintext,
        customer_id=old.customer_id,
        scopes=old.scopes,
        name=old.name,
        expires_at=old.expires_at,
        metadata={**old.metadata, "rotated_from": old.id},
        requests_per_s=old.requests_per_s,
        traces_per_s=old.traces_per_s,
        ip_allowlist=old.ip_allowlist,
    )
    await c.store.expire_key(old.id, time.time() + body.overlap_s)
    c.auth.forget(old.id)
    return {**info(new), "key": plaintext}
