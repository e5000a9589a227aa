"""The authorization matrix, generated from the app's route table: every route by every
kind of caller. A route without an access rule below fails the suite, so a new endpoint
cannot ship without deciding who may call it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Mount, Route
from tests.integration.management.conftest import Api

# (method, path template) → scope; "public" needs no key. Receivers own path families.
ACCESS: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    ("GET", "/ready"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/langsmith/info"): "public",  # the LangSmith SDK probes it before auth
    ("POST", "/api/v1/traces"): "ingest",
    ("POST", "/v1/traces"): "ingest",
    ("GET", "/api/v1/keys"): "read",
    ("POST", "/api/v1/keys"): "write",
    ("GET", "/api/v1/keys/{key_id}"): "read",
    ("DELETE", "/api/v1/keys/{key_id}"): "write",
    ("POST", "/api/v1/keys/{key_id}/rotate"): "write",
    ("GET", "/api/v1/destinations"): "read",
    ("POST", "/api/v1/destinations"): "write",
    ("GET", "/api/v1/destinations/{dest_id}"): "read",
    ("PUT", "/api/v1/destinations/{dest_id}"): "write",
    ("DELETE", "/api/v1/destinations/{dest_id}"): "write",
    ("POST", "/api/v1/destinations/{dest_id}/test"): "write",
    ("GET", "/api/v1/destinations/{dest_id}/health"): "read",
    ("GET", "/api/v1/rules"): "read",
    ("PUT", "/api/v1/rules"): "write",
    ("GET", "/api/v1/rules/history"): "read",
    ("POST", "/api/v1/rules/rollback"): "write",
    ("POST", "/api/v1/rules/test"): "read",
    ("GET", "/api/v1/dlq"): "read",
    ("POST", "/api/v1/dlq/replay"): "write",
    ("POST", "/api/v1/dlq/purge"): "write",
    ("GET", "/api/v1/traces"): "read",
    ("GET", "/api/v1/traces/{trace_id}"): "read",
    ("POST", "/api/v1/replay"): "write",
    ("GET", "/api/v1/replay"): "read",
    ("GET", "/api/v1/replay/{job_id}"): "read",
}
PREFIX_ACCESS = {  # path families of the receivers
    "/langsmith/": "ingest",
    "/langfuse/": "ingest",
    "/api/v1/webhooks/": "ingest",
    "/openai/v1": "proxy",
    "/anthropic/v1": "proxy",
}
FILL = {"path": "chat/completions", "run_id": "r1", "source": "generic"}


def route_table(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner is None and hasattr(route.app, "router"):
                inner = route.app.router.routes
            if inner is None:
                found.append(("POST", prefix + route.path + "/{path}"))
            else:
                found.extend(route_table(inner, prefix + route.path))
        elif hasattr(route, "original_router"):  # FastAPI's included router
            found.extend(route_table(route.original_router.routes, prefix))
        elif isinstance(route, Route) or hasattr(route, "methods"):
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    found.append((method, prefix + route.path))
    return found


def access_rule(method: str, path: str) -> str | None:
    if (method, path) in ACCESS:
        return ACCESS[(method, path)]
    for prefix, scope in PREFIX_ACCESS.items():
        if path.startswith(prefix):
            return scope
    return None


async def test_every_route_has_an_access_rule(api: Api) -> None:
    table = route_table(api.app.routes)
    assert len(table) >= 30
    missing = [r for r in table if access_rule(*r) is None]
    assert not missing, f"routes without an access rule: {missing}"


def _url(path: str, objects: dict[str, str]) -> str:
    def fill(m: re.Match[str]) -> str:
        name = m.group(1).split(":")[0]
        return objects.get(name) or FILL.get(name, "x")

    return re.sub(r"\{([^}]+)\}", fill, path)


def _headers(scope: str, token: str | None, raw: str | None = None) -> dict[str, str]:
    if raw is not None:
        return {"Authorization": raw, "Content-Type": "application/json"}
    if token is None:
        return {"Content-Type": "application/json"}
    if scope == "proxy":
        return {"X-Untrace-Key": token, "Authorization": "Bearer sk-provider"}
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _wrong_scope(scope: str) -> str:
    return "scope_ingest" if scope == "proxy" else "scope_proxy"


async def test_authorization_matrix(api: Api) -> None:
    acme, globex = api.tenants["acme"], api.tenants["globex"]
    table = [r for r in route_table(api.app.routes) if access_rule(*r) != "public"]
    table.sort(key=lambda r: r[0] == "DELETE")  # destructive calls last
    checked = 0
    for method, path in table:
        scope = access_rule(method, path)
        assert scope is not None
        url = _url(path, acme.objects)
        has_object = "{" in path and any(p in path for p in acme.objects)

        async def call(headers: dict[str, str], url: str = url, method: str = method) -> Any:
            return await api.client.request(method, url, headers=headers, json={})

        cases: list[tuple[str, dict[str, str], set[int]]] = [
            ("no key", _headers(scope, None), {401}),
            ("malformed", _headers(scope, None, raw="Bearer"), {401}),
            ("malformed scheme", _headers(scope, None, raw="Token abc"), {401}),
            ("unknown", _headers(scope, "utk_unknown_0123456789abcdef"), {401}),
            ("expired", _headers(scope, api.keys["expired"]), {401}),
            ("revoked", _headers(scope, api.keys["revoked"]), {401}),
            ("wrong scope", _headers(scope, api.keys[_wrong_scope(scope)]), {403}),
            ("ip not allowed", _headers(scope, api.keys["ip_denied"]), {403}),
        ]
        for name, headers, expected in cases:
            r = await call(headers)
            assert r.status_code in expected, (method, path, name, r.status_code, r.text)
            checked += 1
        # the right key: allowed (its own objects exist, so no 404 either)
        r = await call(_headers(scope, api.keys["right"]))
        assert r.status_code not in (401, 403), (method, path, "right key", r.text)
        if has_object:
            assert r.status_code != 404, (method, path, "right key", r.text)
        # another customer's key on acme's objects: as if they did not exist
        r = await call(_headers(scope, globex.key))
        if has_object:
            # exactly what a missing object answers: existence is not revealed
            missing = _url(path, {k: "no-such-object" for k in acme.objects})
            r_missing = await call(_headers(scope, globex.key), missing)
            assert r.status_code == r_missing.status_code, (method, path, r.text, r_missing.text)
            if method != "PUT":  # a PUT creates in the caller's own namespace
                assert r.status_code == 404, (method, path, "other customer", r.text)
        else:
            assert r.status_code not in (401, 403), (method, path, "other customer", r.text)
            for value in acme.objects.values():
                assert value not in r.text, (method, path, "leaks", value)
        checked += 2
    assert checked >= 300


@pytest.mark.parametrize("path", ["/api/v1/keys", "/api/v1/destinations", "/api/v1/dlq"])
async def test_customer_param_needs_admin(api: Api, path: str) -> None:
    acme = api.tenants["acme"]
    r = await api.client.get(path, params={"customer": "globex"}, headers=api.auth(acme.key))
    assert r.status_code == 404
    from tests.integration.management.conftest import ADMIN

    r = await api.client.get(path, params={"customer": "globex"}, headers=api.auth(ADMIN))
    assert r.status_code == 200
    assert "globex" in r.text and "acme-" not in r.text
