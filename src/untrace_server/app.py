"""Builds the ASGI app and wires the components in its lifespan.

Start-up order: control store (and the bootstrap key) → queue → destinations and their
deliverers → worker → background upkeep. Shutdown is the reverse, through one
AsyncExitStack: the server stops accepting first (uvicorn), then the worker and the
deliverers get the grace period to finish in-flight batches; whatever is left is
durable in the queue for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from untrace_server import __version__
from untrace_server.api.errors import handle_exception
from untrace_server.api.management import build_management_app
from untrace_server.api.middleware import MetricsMiddleware
from untrace_server.config import Settings
from untrace_server.control.auth import Authenticator
from untrace_server.control.crypto import load_keyring
from untrace_server.control.fields import (
    FieldCipher,
    FieldDecryptingManager,
    FieldEncryptingSink,
    field_cipher,
)
from untrace_server.control.jwt import ServiceTokenVerifier
from untrace_server.control.netallow import RequestContextMiddleware
from untrace_server.control.ratelimit import KeyRateLimiter, RateLimitedSink
from untrace_server.control.store import ControlStore
from untrace_server.control.topology import Topology
from untrace_server.delivery.backlog import BacklogGuard
from untrace_server.delivery.manager import DeliveryManager, build_destination
from untrace_server.destinations.egress import EgressPolicy
from untrace_server.errors import UntraceError
from untrace_server.ingest.base import TraceSink
from untrace_server.ingest.native import NativeReceiver
from untrace_server.observability import metrics
from untrace_server.observability.tracing import configure_tracing
from untrace_server.pipeline.worker import TraceWorker
from untrace_server.queue import queue_from_settings
from untrace_server.queue.base import Queue
from untrace_server.receivers import build_receivers

__all__ = ["Components", "build_app"]

log = logging.getLogger("untrace")

_UPKEEP_S = 5.0
_PRUNE_EVERY_S = 3600.0


@dataclass
class Components:
    settings: Settings
    store: ControlStore
    queue: Queue
    auth: Authenticator
    sink: TraceSink
    topology: Topology
    cipher: FieldCipher | None = None  # security.encrypt_fields
    egress: EgressPolicy | None = None  # security.egress: where destinations may connect
    backlog: BacklogGuard | None = None  # delivery.max_backlog_share, fed by the upkeep
    delivery: DeliveryManager | None = None
    worker: TraceWorker | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def build_components(settings: Settings) -> Components:
    """Validate everything that can be validated before a socket opens (ConfigError)."""
    security = settings.security
    keyring = load_keyring(settings.master_key, security.previous_master_keys, settings.data_dir)
    cipher = field_cipher(settings, keyring)
    store = ControlStore.from_settings(settings, keyring)
    queue = queue_from_settings(settings)
    egress = EgressPolicy.build(**security.egress.model_dump())
    for customer_id, customer in settings.customers.items():
        for spec in customer.destinations:  # validate every file-declared destination now
            build_destination(customer_id, spec, str(settings.data_dir), egress)
    topology = Topology(settings, store)
    limiter = KeyRateLimiter(
        security.rate_limit_storage,
        security.default_requests_per_s,
        security.default_traces_per_s,
    )
    return Components(
        settings=settings,
        store=store,
        queue=queue,
        auth=Authenticator(
            store,
            limiter=limiter,
            service_tokens=ServiceTokenVerifier(
                security.jwt_secret, security.jwt_audience, security.jwt_issuers
            )
            if security.jwt_secret
            else None,
        ),
        sink=FieldEncryptingSink(queue, limiter, cipher)
        if cipher
        else RateLimitedSink(queue, limiter),
        topology=topology,
        cipher=cipher,
        egress=egress,
    )


async def _upkeep(c: Components) -> None:
    """Every few seconds: queue gauges, lazily written key last-used times; hourly: prune."""
    loop = asyncio.get_running_loop()
    next_prune = loop.time() + 60.0
    while True:
        await asyncio.sleep(_UPKEEP_S)
        try:
            stats = await c.queue.stats()
            if c.backlog is not None:
                c.backlog.update(stats)
            for topic, count in stats.pending.items():
                metrics.QUEUE_DEPTH.labels(topic).set(count)
            for topic, count in stats.dead.items():
                metrics.DEAD_LETTERS.labels(topic).set(count)
            metrics.QUEUE_BYTES.set(stats.bytes_used)
            await c.auth.flush_last_used()
            if loop.time() >= next_prune and hasattr(c.queue, "prune"):
                pruned = await c.queue.prune()
                if pruned:
                    log.info("pruned %d acked traces past retention", pruned)
                next_prune = loop.time() + _PRUNE_EVERY_S
        except UntraceError as exc:
            log.warning("upkeep: %s", exc)
        except Exception:
            log.exception("upkeep failed")


@contextlib.asynccontextmanager
async def _run(c: Components) -> AsyncIterator[None]:
    settings = c.settings
    async with contextlib.AsyncExitStack() as stack:
        tracing = settings.tracing
        flush_spans = configure_tracing(
            tracing.endpoint,
            headers=tracing.headers,
            sample_ratio=tracing.sample_ratio,
            service_name=tracing.service_name,
            role=settings.role,
        )
        if flush_spans is not None:  # last out: the spans of the shutdown itself
            stack.push_async_callback(asyncio.to_thread, flush_spans)
        await c.store.start()
        stack.push_async_callback(c.store.close)
        if settings.bootstrap_admin_key:
            await c.store.add_key(
                settings.bootstrap_admin_key,
                customer_id="default",
                scopes=("admin",),
                name="bootstrap",
            )
        await c.queue.start()
        stack.push_async_callback(c.queue.close)
        if settings.role in ("all", "worker"):
            args = (c.queue, settings.delivery, str(settings.data_dir), settings.shutdown_grace_s)
            c.delivery = (
                FieldDecryptingManager(*args, cipher=c.cipher, egress=c.egress)
                if c.cipher
                else DeliveryManager(*args, egress=c.egress)
            )
            stack.push_async_callback(c.delivery.stop)
            c.topology.delivery = c.delivery
        await c.topology.refresh(force=True)
        watcher = asyncio.create_task(c.topology.watch(), name="topology")
        stack.push_async_callback(_cancel, watcher)
        if settings.role in ("all", "worker"):
            # shed deliveries are recovered by a replay: only where retained traces can be
            # listed (SQLite, Redis; not NATS) may the guard shed anything
            replayable = hasattr(c.queue, "list_retained")
            c.backlog = BacklogGuard(
                settings.queue.budget_bytes,
                settings.delivery.max_backlog_share if replayable else 1.0,
                failing=c.delivery.failing if c.delivery is not None else lambda topic: True,
            )
            c.worker = TraceWorker(
                c.queue,
                c.topology.pipeline,
                batch=settings.worker.batch,
                visibility_s=settings.worker.visibility_s,
                backlog=c.backlog,
            )
            worker_task = asyncio.create_task(c.worker.run(), name="worker")
            stack.push_async_callback(
                _stop_worker, c.worker, worker_task, settings.shutdown_grace_s
            )
        upkeep = asyncio.create_task(_upkeep(c), name="upkeep")
        stack.push_async_callback(_cancel, upkeep)
        log.info(
            "untrace %s ready: role=%s, %d destinations, data in %s",
            __version__,
            settings.role,
            len(c.topology.destination_specs()),
            settings.data_dir,
        )
        yield


async def _stop_worker(worker: TraceWorker, task: asyncio.Task[None], grace_s: float) -> None:
    worker.stop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, grace_s)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_app(settings: Settings, components: Components | None = None) -> Starlette:
    c = components or build_components(settings)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def ready(request: Request) -> Response:
        problems = {}
        for name, check in (("queue", c.queue.ping), ("store", c.store.ping)):
            try:
                await asyncio.wait_for(check(), 2.0)
            except Exception as exc:
                problems[name] = str(exc) or type(exc).__name__
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    routes.extend(NativeReceiver(c.sink, c.auth, settings.ingest).routes())
    receivers = build_receivers(c)
    for receiver in receivers:
        routes.extend(receiver.routes())
    # last: the management API (and /openapi.json, /docs) behind every hot-path route
    routes.append(Mount("", app=build_management_app(c)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with _run(c), contextlib.AsyncExitStack() as stack:
            for receiver in receivers:
                if hasattr(receiver, "start"):
                    await receiver.start()
                if hasattr(receiver, "shutdown"):
                    stack.push_async_callback(receiver.shutdown)
            # Everything built at start-up lives as long as the process: move it out of
            # the collector's sight. Without this a full collection walks the whole heap
            # and stalls every in-flight request for 40-100 ms (docs/benchmarks.md#proxy).
            gc.freeze()
            yield

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={Exception: handle_exception, UntraceError: handle_exception},
    )
    app.state.components = c
    app.add_middleware(RequestContextMiddleware, trusted_proxies=settings.security.trusted_proxies)
    app.add_middleware(MetricsMiddleware)
    return app
