"""Adapters from the router's two seams to what ``state/`` and ``workers/`` provide.

``router`` owns the small protocols it needs (``router.stats.StatsSource``,
``router.load.LoadSignal``) and imports neither Redis nor the pool; the server, which wires
everything, adapts the shared Redis statistics and the pool's scraped vLLM load to them here.
"""

from __future__ import annotations

import math

from core.request import Decision
from core.result import PolicyResult
from router.stats import WindowTotals
from state.stats import RouterStats, observation
from workers.pool import WorkerPool


class SharedRouterStats:
    """``StatsSource`` over ``state.stats.RouterStats`` (windows shared by every replica)."""

    def __init__(self, stats: RouterStats) -> None:
        self._stats = stats

    def record(self, decision: Decision, result: PolicyResult) -> None:
        self._stats.record(observation(decision, result))

    async def totals(self, seconds: float) -> WindowTotals:
        windows = max(1, math.ceil(seconds / self._stats.window_s))
        table = await self._stats.snapshot(windows)
        sums = table.values()
        return WindowTotals(
            requests=int(sum(s.requests for s in sums)),
            samples=sum(s.samples for s in sums),
            tokens=sum(s.tokens for s in sums),
        )


class PoolSaturation:
    """``LoadSignal`` over the pool's scraped vLLM metrics.

    A worker's saturation is the larger of its KV cache use and waiting/running requests
    (as many waiting as running: full). A tier is as saturated as its least loaded usable
    worker, since the balancer sends the next call there; with no fresh signal from any
    worker the tier's load is unknown (None), never idle.
    """

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    def saturation(self, tier: str) -> float | None:
        levels = []
        for worker in self._pool.workers.get(tier, []):
            signal = self._pool.signals.fresh(worker.url)
            if worker.healthy is False or signal is None:
                continue
            queue = signal.waiting / max(signal.running, 1.0)
            levels.append(min(max(queue, signal.kv_usage or 0.0), 1.0))
        return min(levels) if levels else None
