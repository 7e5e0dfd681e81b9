"""``create_app(settings)``: the FastAPI application; resources live in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client.exposition import choose_encoder

from core.backend import Backend
from router.router import AUTO_MODEL, Router
from server import admin, errors, openapi, routes
from server.api.responses.endpoint import ResponsesEndpoint
from server.auth import Guard
from server.boundary import Boundary
from server.config import Settings
from server.context import AppContext
from server.lifecycle import RequestLifecycle
from server.metrics import Metrics
from server.reload import ConfigReloader
from server.router_seams import PoolSaturation, SharedRouterStats
from server.tracing import Tracing
from state.shared import SharedState
from workers import engines
from workers.launcher import WorkerSupervisor
from workers.pool import WorkerPool

log = logging.getLogger("ttc.server")


def router_factory(pool: WorkerPool, shared: SharedState) -> Callable[[Settings], Router]:
    """Builds a Router for a Settings tree (at start-up and on every config reload)."""

    def build(settings: Settings) -> Router:
        return Router(
            settings.router,
            settings.policies,
            {name: tier.cost_per_1k_tokens for name, tier in settings.tiers.items()},
            stats=SharedRouterStats(shared.stats),
            profiles={name: tier.model_profile() for name, tier in settings.tiers.items()},
            lengths={n: t.default_max_tokens for n, t in settings.tiers.items()},
            capabilities=engines.capabilities(settings.tiers),
            load=PoolSaturation(pool),
            shadow_backend=pool,
        )

    return build


def build_context(
    settings: Settings,
    backend: Backend | None = None,
    tracing: Tracing | None = None,
    supervise: bool = True,
) -> AppContext:
    """Everything the app needs; ``backend`` replaces the pool for generation (unit tests);
    ``tracing`` (None: off) traces each request and the pool's upstream calls; ``supervise``
    false leaves the local workers to another process of the group (``server.processes``)."""
    metrics = Metrics()
    calls = tracing.calls if tracing is not None else None
    pool = WorkerPool(dict(settings.tiers), settings.pool, tracer=calls)
    metrics.watch_pool(pool)
    shared = SharedState(
        settings.redis,
        settings.auth,
        settings.limits,
        settings.cache,
        observer=metrics,
        responses=settings.responses,
    )
    metrics.watch_redis(shared.redis)
    guard = Guard(shared, metrics)
    router = router_factory(pool, shared)(settings)
    generate = backend or pool
    lifecycle = RequestLifecycle(
        router, generate, guard, shared.cache, metrics, settings.server, tracing
    )
    metrics.watch_router(lambda: lifecycle.router)
    supervisors = [
        WorkerSupervisor(t.launch, t.model_profile())
        for t in settings.tiers.values()
        if t.launch and supervise
    ]
    responses = ResponsesEndpoint(shared.responses)
    return AppContext(
        settings,
        metrics,
        pool,
        lifecycle,
        responses,
        _unique(supervisors),
        shared=shared,
        guard=guard,
    )


def _unique(supervisors: list[WorkerSupervisor]) -> list[WorkerSupervisor]:
    """Two tiers may share one launched worker (several served names): launch it once."""
    by_url = {s.launch.url: s for s in supervisors}
    return list(by_url.values())


def create_app(
    settings: Settings,
    config_path: Path | None = None,
    *,
    backend: Backend | None = None,
    span_exporter: SpanExporter | None = None,
    supervise: bool = True,
) -> FastAPI:
    """The app; with ``config_path`` it reloads the router and policies when the file changes
    or on SIGHUP (see ``server.reload``). ``backend`` stands in for the worker pool in tests,
    ``span_exporter`` for the OTLP exporter when ``tracing.enabled`` (``server.tracing``);
    ``supervise`` false: another process launches the local workers (``server.processes``)."""
    tracing = Tracing.build(settings.tracing, span_exporter)
    state = build_context(settings, backend, tracing, supervise)
    reloader = (
        ConfigReloader(config_path, state, router_factory(state.pool, state.shared))
        if config_path is not None
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for supervisor in state.supervisors:
            await supervisor.start()
        await state.pool.start()
        state.shared.start()
        if reloader is not None:
            await reloader.start()
        try:
            yield
        finally:
            if reloader is not None:
                await reloader.close()
            await state.lifecycle.router.aclose()  # shadows, trace file, controller
            await state.guard.close()
            await state.shared.close()
            await state.pool.close()
            for supervisor in state.supervisors:
                await supervisor.stop()
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)  # exports the spans still queued

    app = FastAPI(title="ttc-gateway", version="0.1.0", lifespan=lifespan)
    app.state.ttc = state
    errors.install(app)
    app.include_router(routes.api)
    openapi.install(app, routes.BODIES, [AUTO_MODEL, *settings.tiers])
    _add_operational_routes(app, state)
    admin.protect(app, settings.server)  # admin key on /metrics and docs; CORS
    app.add_middleware(Boundary)  # outermost: a client gone is INFO, a bug one traceback
    return app


def _add_operational_routes(app: FastAPI, state: AppContext) -> None:
    started = int(time.time())

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        tiers = state.pool.ready()
        ok = all(tiers.values())
        body: dict[str, object] = {"status": "ready" if ok else "not_ready", "tiers": tiers}
        if not ok:  # e.g. "its upstream refused the gateway's credentials (401)"
            body["reasons"] = state.pool.not_ready()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        data = [
            {
                "id": AUTO_MODEL,
                "object": "model",
                "created": started,
                "owned_by": "ttc-gateway",
                "description": "the router chooses the tier",
            }
        ]
        for name, tier in state.settings.tiers.items():
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": started,
                    "owned_by": "ttc-gateway",
                    "description": tier.description,
                    "upstream_model": tier.model,
                }
            )
        return {"object": "list", "data": data}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        # A scraper that asks for OpenMetrics gets the exemplars (trace ids) too.
        encode, media_type = choose_encoder(request.headers.get("accept", ""))
        # Under ``server.processes`` > 1, every process's registry merged (ttc.processes).
        gather = getattr(request.app.state, "gather_metrics", None)
        registry = await gather() if gather is not None else state.metrics.registry
        return Response(encode(registry), media_type=media_type)
