"""JWT service tokens (seed §6.1 ``ServiceToken``: iss, sub, aud, exp, iat, permissions)
for service-to-service calls, HS256 with ``security.jwt_secret``.

A valid token acts like an API key of customer ``customer`` (claim; default
``default``) with its ``permissions`` as scopes; its id is ``jwt:<sub>``.
"""

from __future__ import annotations

from typing import Any

import jwt

from untrace_server.control.keys import SCOPES, ApiKey
from untrace_server.errors import Unauthorized

__all__ = ["ServiceTokenVerifier", "looks_like_jwt"]


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


class ServiceTokenVerifier:
    def __init__(self, secret: str, audience: str = "untrace", issuers: list[str] | None = None):
        self.secret = secret
        self.audience = audience
        self.issuers = issuers or []

    def issue(self, claims: dict[str, Any]) -> str:
        """Sign ``claims`` (tests and ``untrace`` tooling)."""
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str) -> ApiKey:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                audience=self.audience,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("service token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid service token: {exc}") from None
        if self.issuers and claims["iss"] not in self.issuers:
            raise Unauthorized("service token issuer is not trusted")
        permissions = claims.get("permissions", [])
        if not isinstance(permissions, list):
            raise Unauthorized("service token permissions must be a list")
        customer = claims.get("customer", "default")
        return ApiKey(
            id=f"jwt:{claims['sub']}",
            customer_id=str(customer),
            prefix="jwt",
            scopes=frozenset(p for p in permissions if p in SCOPES),
            name=str(claims["sub"]),
            created_at=float(claims["iat"]),
            expires_at=float(claims["exp"]),
        )
