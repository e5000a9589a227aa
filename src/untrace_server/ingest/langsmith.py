"""LangSmith-compatible ingestion under ``/langsmith``: an app using the langsmith SDK with
``LANGSMITH_ENDPOINT=http://host:8080/langsmith`` and an Untrace key as
``LANGSMITH_API_KEY`` is captured.

Routes: ``GET /info``, ``POST /runs``, ``PATCH /runs/{id}``, ``POST /runs/batch``,
``POST /runs/multipart``. A run complete on arrival (it has an end time) is submitted
at once; otherwise it waits in the durable open-run store (``_open_runs``) until its
patch arrives, or is forwarded as partial (``metadata.partial = true``) after
``receivers.langsmith_open_run_timeout_s``. Every answer is 202 after the runs are
durable (queued, or committed in the open-run store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from untrace_server.control.auth import Authenticator, bearer_token
from untrace_server.errors import InvalidPayload, UntraceError
from untrace_server.ingest._multipart import boundary_of, parse_multipart
from untrace_server.ingest._open_runs import OpenRun, OpenRunStore, complete
from untrace_server.ingest._runs import merge, run_to_trace
from untrace_server.ingest.base import TraceSink, read_body
from untrace_server.ingest.config import ReceiversConfig
from untrace_server.model import Trace

if TYPE_CHECKING:
    from untrace_server.app import Components

__all__ = ["LangsmithReceiver", "build_receiver"]

log = logging.getLogger("untrace.ingest.langsmith")
_FIELDS = {"inputs", "outputs", "events", "extra", "error", "serialized"}
Runs = dict[str, dict[str, Any]]


def _decode(data: bytes) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidPayload(f"malformed JSON: {exc}") from None


def _runs(items: Any, what: str) -> Runs:
    if items is None:
        return {}
    if not isinstance(items, list) or not all(
        isinstance(r, dict) and isinstance(r.get("id"), str) and r["id"] for r in items
    ):
        raise InvalidPayload(f"'{what}' must be a list of runs with an 'id'", status=422)
    out: Runs = {}
    for run in items:
        out[run["id"]] = {**out.get(run["id"], {}), **run}
    return out


def multipart_runs(parts: list[tuple[str, str, bytes]]) -> tuple[Runs, Runs]:
    ops: dict[str, Runs] = {"post": {}, "patch": {}}
    for name, _, data in parts:
        op, _, rest = name.partition(".")
        if op not in ops:
            continue  # feedback.<id>, attachment.<id>.<name>: not forwarded
        run_id, _, field = rest.partition(".")
        run = ops[op].setdefault(run_id, {"id": run_id})
        if not field:
            value = _decode(data)
            if not isinstance(value, dict):
                raise InvalidPayload(f"part {name!r} must be a JSON object", status=422)
            run.update(value)
        elif field in _FIELDS:
            run[field] = _decode(data)
    return ops["post"], ops["patch"]


class LangsmithReceiver:
    def __init__(
        self, sink: TraceSink, auth: Authenticator, store: OpenRunStore, config: ReceiversConfig
    ) -> None:
        self.sink = sink
        self.auth = auth
        self.store = store
        self.config = config
        self._lock = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/langsmith/info", self.info, methods=["GET"]),
            Route("/langsmith/runs", self.post_run, methods=["POST"]),
            Route("/langsmith/runs/batch", self.post_batch, methods=["POST"]),
            Route("/langsmith/runs/multipart", self.post_multipart, methods=["POST"]),
            Route("/langsmith/runs/{run_id}", self.patch_run, methods=["PATCH"]),
        ]

    async def start(self) -> None:
        await self.store.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="langsmith-open-runs")

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.store.close()

    async def _customer(self, request: Request) -> str:
        token = (
            request.headers.get("x-api-key")
            or bearer_token(request.headers.get("authorization"))
            or request.headers.get("x-untrace-key")
        )
        return (await self.auth.authenticate(token, "ingest")).customer_id

    async def _json(self, request: Request) -> Any:
        return _decode(await read_body(request, self.config.langsmith_max_body_bytes))

    async def info(self, request: Request) -> JSONResponse:
        limit = self.config.langsmith_max_body_bytes
        return JSONResponse(
            {
                "version": "untrace",
                "batch_ingest_config": {
                    "use_multipart_endpoint": True,
                    "size_limit_bytes": limit,
                    "size_limit": 100,
                    "scale_up_qsize_trigger": 1000,
                    "scale_up_nthreads_limit": 16,
                    "scale_down_nempty_trigger": 4,
                },
                "instance_flags": {"zstd_compression_enabled": False},
            }
        )

    async def post_run(self, request: Request) -> JSONResponse:
        customer = await self._customer(request)
        return await self.ingest(customer, _runs([await self._json(request)], "run"), {})

    async def patch_run(self, request: Request) -> JSONResponse:
        customer = await self._customer(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            raise InvalidPayload("body must be a JSON object", status=422)
        run_id = request.path_params["run_id"]
        return await self.ingest(customer, {}, {run_id: {**body, "id": run_id}})

    async def post_batch(self, request: Request) -> JSONResponse:
        customer = await self._customer(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            raise InvalidPayload('body must be {"post": [...], "patch": [...]}', status=422)
        return await self.ingest(
            customer, _runs(body.get("post"), "post"), _runs(body.get("patch"), "patch")
        )

    async def post_multipart(self, request: Request) -> JSONResponse:
        customer = await self._customer(request)
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise InvalidPayload("Content-Type must be multipart/form-data", status=415)
        body = await read_body(request, self.config.langsmith_max_body_bytes)
        posts, patches = multipart_runs(parse_multipart(body, boundary_of(content_type)))
        return await self.ingest(customer, posts, patches)

    async def ingest(self, customer: str, posts: Runs, patches: Runs) -> JSONResponse:
        # complete on arrival (the SDK folds post + patch of a finished run together)
        direct = [
            run_to_trace(merge(posts[i], patches.get(i)))
            for i in posts
            if i not in patches and complete(posts[i], None)
        ]
        sent = {t.id for t in direct}
        held_posts = {i: r for i, r in posts.items() if i not in sent}
        if direct:
            await self.sink.submit(direct, customer)
        if held_posts or patches:
            async with self._lock:
                done = await self.store.apply(customer, held_posts, patches)
                await self._forward(done)
        return JSONResponse({"status": "accepted"}, status_code=202)

    async def _forward(self, rows: list[OpenRun], *, expired: bool = False) -> None:
        by_customer: dict[str, list[Trace]] = {}
        now = int(time.time() * 1000)
        for customer, run_id, post, patch in rows:
            run = merge(post, patch)
            run.setdefault("id", run_id)
            partial = expired and not complete(post, patch)
            by_customer.setdefault(customer, []).append(
                run_to_trace(run, partial=partial, fallback_ms=now)
            )
        for customer, traces in by_customer.items():
            await self.sink.submit(traces, customer)
        await self.store.delete([(c, r) for c, r, _, _ in rows])

    async def sweep(self) -> int:
        """Forward runs held longer than the timeout; returns how many."""
        before = time.time() - self.config.langsmith_open_run_timeout_s
        total = 0
        async with self._lock:
            while rows := await self.store.expired(before):
                await self._forward(rows, expired=True)
                total += len(rows)
        if total:
            log.info("forwarded %d open LangSmith runs after the timeout", total)
        return total

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.langsmith_sweep_interval_s)
            try:
                await self.sweep()
            except UntraceError as exc:
                log.warning("open-run sweep: %s", exc)
            except Exception:
                log.exception("open-run sweep failed")


def build_receiver(components: Components) -> LangsmithReceiver:
    settings = components.settings
    store = OpenRunStore(settings.data_dir / "open_runs.db")
    return LangsmithReceiver(components.sink, components.auth, store, settings.receivers)
