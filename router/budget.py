"""Budget controller: move the band thresholds so average compute meets a target.

Every finished request is counted in the shared ``StatsSource`` (samples drawn and tokens
spent). At most every ``update_interval_s`` the controller reads the mean cost over the
sliding window and integrates the relative error into an offset:

    offset += gain * (mean - target) / target,   clamped to [-max_offset, max_offset]

The router subtracts the offset from a request's difficulty before choosing its band, which is
the same as raising every threshold by it: spending too much pushes traffic to cheaper bands,
spending too little lets more through to the expensive ones. An integral controller settles
without steady-state error; the relative error makes ``gain`` independent of the unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from router.config import BudgetConfig
from router.stats import StatsSource


class BudgetController:
    def __init__(
        self,
        config: BudgetConfig,
        stats: StatsSource,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._stats = stats
        self._clock = clock
        self._last_update = clock()
        self.offset = 0.0
        self.window_mean: float | None = None
        self._task: asyncio.Task[bool] | None = None

    @property
    def enabled(self) -> bool:
        return self._config.target is not None

    @property
    def metric(self) -> str:
        return self._config.metric

    def tick(self) -> None:
        """Start ``maybe_update`` in the background when one is due (never delays a request)."""
        due = self._clock() - self._last_update >= self._config.update_interval_s
        if self.enabled and due and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self.maybe_update())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def maybe_update(self) -> bool:
        """Update the offset if an interval has passed and the window holds enough requests."""
        target = self._config.target
        now = self._clock()
        if target is None or now - self._last_update < self._config.update_interval_s:
            return False
        self._last_update = now
        totals = await self._stats.totals(self._config.window_s)
        mean = self.window_mean = totals.mean(self._config.metric)
        if mean is None or totals.requests < self._config.min_requests:
            return False
        step = self._config.gain * (mean - target) / target
        limit = self._config.max_offset
        self.offset = min(max(self.offset + step, -limit), limit)
        return True
