"""The whole app in process (lifespan run, real SQLite store and queue in a tmp dir) with
two customers, ``acme`` and ``globex``, each owning one of every kind of object."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from untrace_server import model
from untrace_server.app import Components, build_app
from untrace_server.config import load_settings
from untrace_server.queue.base import delivery_topic

ADMIN = "utk_mgmt_admin_0123456789abcdef"
CLOSED = "http://127.0.0.1:9"  # nothing listens: deliveries fail fast


@dataclass
class Tenant:
    name: str
    key: str = ""  # ingest, read, write
    objects: dict[str, str] = field(default_factory=dict)  # path param → this tenant's id


@dataclass
class Api:
    app: Starlette
    client: httpx.AsyncClient
    c: Components
    tenants: dict[str, Tenant]
    keys: dict[str, str]  # variant → token (of tenant acme)

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


async def _key(c: Components, token: str, customer: str, scopes: tuple[str, ...], **kw: Any) -> str:
    record = await c.store.add_key(token, customer_id=customer, scopes=scopes, **kw)
    return record.id


async def _tenant(c: Components, name: str) -> Tenant:
    t = Tenant(name, key=f"utk_{name}_full_key_0123456789")
    await _key(c, t.key, name, ("ingest", "proxy", "read", "write"))
    t.objects["key_id"] = await _key(c, f"utk_{name}_spare_key_0123456789", name, ("read",))
    await c.store.put_destination(name, f"{name}-hook", "webhook", {"url": CLOSED, "secret": "s"})
    await c.store.put_routing(name, {"defaultDestinations": [f"{name}-hook"]}, "test")
    t.objects["dest_id"] = f"{name}-hook"
    trace = model.from_builtins(
        {"id": f"{name}-trace", "startTime": 1, "endTime": 2, "provider": "openai", "model": "m"}
    )
    trace.metadata["customerId"] = name
    await c.queue.publish("traces", [(trace.id, model.encode(trace))])
    [dead] = await c.queue.publish(
        delivery_topic(name, f"{name}-hook"), [(trace.id, model.encode(trace))]
    )
    await c.queue.dead([dead], f"{name} failure")
    t.objects["trace_id"] = trace.id
    return t


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = load_settings(
        None,
        data_dir=tmp_path / "data",
        bootstrap_admin_key=ADMIN,
        secret_key="test-secret",
        openai_base_url=CLOSED,
        anthropic_base_url=CLOSED,
    )
    app = build_app(settings)
    c: Components = app.state.components
    async with app.router.lifespan_context(app):
        assert c.worker is not None
        c.worker.stop()  # the fixture's objects stay where they were put
        tenants = {n: await _tenant(c, n) for n in ("acme", "globex")}
        await c.topology.refresh(force=True)
        now = time.time()
        keys = {"right": tenants["acme"].key}
        for variant, scopes, kw in (
            ("expired", ("ingest", "proxy", "read", "write"), {"expires_at": now - 1}),
            ("revoked", ("ingest", "proxy", "read", "write"), {}),
            ("scope_proxy", ("proxy",), {}),
            ("scope_ingest", ("ingest",), {}),
            (
                "ip_denied",
                ("ingest", "proxy", "read", "write"),
                {"ip_allowlist": ["203.0.113.0/24"]},
            ),
        ):
            keys[variant] = f"utk_acme_{variant}_0123456789abcdef"
            key_id = await _key(c, keys[variant], "acme", scopes, **kw)
            if variant == "revoked":
                await c.store.revoke_key(key_id)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.post(
                "/api/v1/replay",
                json={"destination": "globex-hook", "since": 0},
                headers={"Authorization": f"Bearer {tenants['globex'].key}"},
            )
            assert r.status_code == 202, r.text
            tenants["globex"].objects["job_id"] = r.json()["id"]
            r = await client.post(
                "/api/v1/replay",
                json={"destination": "acme-hook", "since": 0},
                headers={"Authorization": f"Bearer {tenants['acme'].key}"},
            )
            tenants["acme"].objects["job_id"] = r.json()["id"]
            await asyncio.sleep(0)
            yield Api(app, client, c, tenants, keys)
