"""What the lifespan creates and the routes use, held on ``app.state.ttc``."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.config import Settings
from server.metrics import Metrics
from server.service import ChatService
from workers.launcher import WorkerSupervisor
from workers.pool import WorkerPool


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    pool: WorkerPool
    service: ChatService
    supervisors: list[WorkerSupervisor] = field(default_factory=list)
