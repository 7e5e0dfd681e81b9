"""``WorkerPool``: the ``Backend`` policies call, over every worker of every tier.

It picks a worker (healthy first, then fewest requests in flight), retries a call that failed
before any byte on another worker, and answers 503 with ``Retry-After`` when a tier has no
worker left. A background task checks each worker's ``/health``. The pool keeps its own
counters; ``server.metrics`` reads them at scrape time, so this package needs no Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from policies.backend import Completion, Delta
from policies.errors import ModelNotFound, UpstreamUnavailable
from workers.client import WorkerClient, WorkerFailed
from workers.config import PoolConfig, TierConfig


@dataclass
class Worker:
    tier: str
    url: str
    client: WorkerClient
    healthy: bool | None = None  # None: not checked yet
    in_flight: int = 0
    failures: int = 0
    last_check: float = 0.0

    @property
    def usable(self) -> bool:
        return self.healthy is not False


@dataclass
class PoolCounters:
    retries: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    upstream_seconds: list[tuple[str, str, float]] = field(default_factory=list)


class WorkerPool:
    def __init__(self, tiers: dict[str, TierConfig], config: PoolConfig) -> None:
        self._tiers = tiers
        self._config = config
        limits = httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=64)
        self._http = httpx.AsyncClient(limits=limits, trust_env=False)
        self.workers: dict[str, list[Worker]] = {
            name: [
                Worker(name, url, WorkerClient(self._http, url, _timeout(tier)))
                for url in tier.urls()
            ]
            for name, tier in tiers.items()
        }
        self.counters = PoolCounters()
        self._health_task: asyncio.Task[None] | None = None

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.check_health()
        self._health_task = asyncio.create_task(self._health_loop(), name="pool-health")

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self._http.aclose()

    # health ----------------------------------------------------------------------------
    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.health_interval_s)
            await self.check_health()

    async def check_health(self) -> None:
        workers = [w for ws in self.workers.values() for w in ws]
        await asyncio.gather(*(self._check(w) for w in workers))

    async def _check(self, worker: Worker) -> None:
        try:
            response = await self._http.get(
                worker.url + "/health", timeout=self._config.health_timeout_s
            )
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        worker.healthy = ok
        worker.last_check = time.monotonic()
        if ok:
            worker.failures = 0

    def ready(self) -> dict[str, bool]:
        """Per tier: is at least one worker known healthy."""
        return {t: any(w.healthy for w in ws) for t, ws in self.workers.items()}

    # selection -------------------------------------------------------------------------
    def tier_model(self, tier: str) -> str:
        if tier not in self._tiers:
            raise ModelNotFound(f"The model '{tier}' does not exist", param="model")
        return self._tiers[tier].model

    def _pick(self, tier: str, tried: set[str]) -> Worker:
        candidates = [w for w in self.workers[tier] if w.usable and w.url not in tried]
        if not candidates:
            raise UpstreamUnavailable(
                f"no healthy worker for tier '{tier}'; retry shortly",
                retry_after=self._config.retry_after_s,
            )
        return min(candidates, key=lambda w: (w.in_flight, w.failures))

    def _failed(self, worker: Worker) -> None:
        worker.failures += 1
        worker.healthy = False  # re-admitted by the next successful health check
        self.counters.failures[worker.url] = self.counters.failures.get(worker.url, 0) + 1

    def _retried(self, tier: str) -> None:
        self.counters.retries[tier] = self.counters.retries.get(tier, 0) + 1

    # Backend ---------------------------------------------------------------------------
    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        body = {**body, "model": self.tier_model(tier)}
        tried: set[str] = set()
        for attempt in range(self._config.max_attempts):
            worker = self._pick(tier, tried)
            tried.add(worker.url)
            if attempt:
                self._retried(tier)
            worker.in_flight += 1
            try:
                return await worker.client.chat(body)
            except WorkerFailed:
                self._failed(worker)
            finally:
                worker.in_flight -= 1
        raise self._exhausted(tier)

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        body = {**body, "model": self.tier_model(tier)}
        tried: set[str] = set()
        for attempt in range(self._config.max_attempts):
            worker = self._pick(tier, tried)
            tried.add(worker.url)
            if attempt:
                self._retried(tier)
            worker.in_flight += 1
            try:
                async for delta in worker.client.stream(body):
                    yield delta
                return
            except WorkerFailed:
                self._failed(worker)
            finally:
                worker.in_flight -= 1
        raise self._exhausted(tier)

    def _exhausted(self, tier: str) -> UpstreamUnavailable:
        return UpstreamUnavailable(
            f"every worker of tier '{tier}' failed; retry shortly",
            retry_after=self._config.retry_after_s,
        )


def _timeout(tier: TierConfig) -> httpx.Timeout:
    return httpx.Timeout(tier.request_timeout_s, connect=tier.connect_timeout_s)
