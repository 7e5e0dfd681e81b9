"""What the app's lifespan creates and the routes use, held on ``app.state.ttc``."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.api.responses.endpoint import ResponsesEndpoint
from server.auth import Guard
from server.config import Settings
from server.lifecycle import RequestLifecycle
from server.metrics import Metrics
from state.shared import SharedState
from workers.launcher import WorkerSupervisor
from workers.pool import WorkerPool


@dataclass
class AppContext:
    settings: Settings
    metrics: Metrics
    pool: WorkerPool
    lifecycle: RequestLifecycle
    responses: ResponsesEndpoint
    supervisors: list[WorkerSupervisor] = field(default_factory=list)
    shared: SharedState = field(kw_only=True)  # Redis-backed keys, limits, cache, stats
    guard: Guard = field(kw_only=True)
