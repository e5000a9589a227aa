"""What every management endpoint shares: the caller (key → customer and scopes), the
customer it acts for, the components, and the errors it may raise.

Scopes: ``read`` for GET, ``write`` for changes; ``admin`` spans customers and may act
for another one with ``?customer=``. Another customer's object is a 404, never a 403:
a key cannot learn that it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from untrace_server.control.keys import ApiKey
from untrace_server.errors import Conflict, IngestError, NotFound

if TYPE_CHECKING:
    from untrace_server.app import Components

__all__ = ["Caller", "Conflict", "NotFound", "Unprocessable", "components", "require"]

_bearer = HTTPBearer(auto_error=False, description="an Untrace API key or service token")


class Unprocessable(IngestError):
    status = 422
    type = "invalid_request"


class Unavailable(IngestError):
    status = 501
    type = "not_supported"


@dataclass(frozen=True)
class Caller:
    key: ApiKey
    customer: str  # the customer this request acts for

    @property
    def is_admin(self) -> bool:
        return "admin" in self.key.scopes

    @property
    def label(self) -> str:
        return f"key:{self.key.prefix}" if self.key.prefix != "jwt" else self.key.id


def components(request: Request) -> Components:
    c: Components = request.app.state.components
    return c


def require(scope: str) -> Any:
    """A dependency: the authenticated caller holding ``scope``."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        customer: Annotated[
            str | None,
            Query(
                max_length=64,
                description="admin keys only: act for this customer (default: the key's)",
            ),
        ] = None,
    ) -> Caller:
        c = components(request)
        token = credentials.credentials if credentials else request.headers.get("x-untrace-key")
        key = await c.auth.authenticate(token, scope)
        if customer is None or customer == key.customer_id:
            return Caller(key, key.customer_id)
        if "admin" not in key.scopes:
            raise NotFound(f"customer {customer!r} not found")
        return Caller(key, customer)

    return Depends(dependency)


Read = Annotated[Caller, require("read")]
Write = Annotated[Caller, require("write")]
