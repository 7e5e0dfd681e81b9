"""``create_app(settings)``: the FastAPI application; resources live in its lifespan."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router.router import AUTO_MODEL, Router
from server import errors, routes
from server.config import Settings
from server.metrics import Metrics
from server.service import ChatService
from server.state import AppState
from workers.launcher import WorkerSupervisor
from workers.pool import WorkerPool

log = logging.getLogger("ttc.server")


def build_state(settings: Settings) -> AppState:
    metrics = Metrics()
    pool = WorkerPool(dict(settings.tiers), settings.pool)
    metrics.watch_pool(pool)
    router = Router(settings.router, settings.policies, tuple(settings.tiers))
    service = ChatService(router, pool, metrics)
    supervisors = [WorkerSupervisor(t.launch) for t in settings.tiers.values() if t.launch]
    return AppState(settings, metrics, pool, service, _unique(supervisors))


def _unique(supervisors: list[WorkerSupervisor]) -> list[WorkerSupervisor]:
    """Two tiers may share one launched worker (several served names): launch it once."""
    by_url = {s.launch.url: s for s in supervisors}
    return list(by_url.values())


def create_app(settings: Settings) -> FastAPI:
    state = build_state(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for supervisor in state.supervisors:
            await supervisor.start()
        await state.pool.start()
        try:
            yield
        finally:
            await state.pool.close()
            for supervisor in state.supervisors:
                await supervisor.stop()

    app = FastAPI(title="ttc-gateway", version="0.1.0", lifespan=lifespan)
    app.state.ttc = state
    errors.install(app)
    app.include_router(routes.router)
    _add_operational_routes(app, state)
    return app


def _add_operational_routes(app: FastAPI, state: AppState) -> None:
    started = int(time.time())

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        tiers = state.pool.ready()
        ok = all(tiers.values())
        body = {"status": "ready" if ok else "not_ready", "tiers": tiers}
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
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
