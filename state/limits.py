"""Rate limits and compute budgets, counted across replicas in Redis.

Each identity (an API key's id, or ``anonymous`` when auth is off) has up to three windows:
``rpm`` (requests per minute), ``tpm`` (tokens per minute) and ``tokens_per_day`` (a budget
per UTC day). ``admit`` checks all three and takes one request slot atomically in one Lua
script (all or nothing, Redis's own clock so replicas agree; the script reads TIME before
writing, which needs Redis >= 5 or script effects replication); ``charge`` adds the tokens a
finished request spent, every sample, probe and judge call, to ``tpm`` and the budget.

A key with a daily budget also reserves each request's worst case before it is dispatched and
settles it to the real spend when the request ends (``state.reservations``, same windows), so
concurrent requests cannot overshoot the budget together: reserved plus spent stays within it.
``tpm`` is not reserved (a rate, not a budget): a request's tokens count there when it ends,
and a request admitted with room left may overshoot it by its own size.

While Redis is unavailable the same rules run in process memory (``state.windows``): an
approximate per-replica fallback with the shared limits divided by ``limits.replicas``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio.client import Redis
from redis.commands.core import AsyncScript

from core.errors import LimitExceeded
from state.config import LimitsConfig
from state.keys import Quota
from state.redis import SharedRedis, StateUnavailable
from state.windows import (
    DAY_MS,
    MINUTE_MS,
    WINDOW_LUA,
    LocalWindows,
    Window,
    allows,
    retry_after_ms,
)

# KEYS: one hash per window (field: window index, value: count).
# ARGV: force (1: charge without checking), then per window: limit, window_ms, need, charge,
# sliding. Returns {admitted, now_ms, prev_1, cur_1, prev_2, cur_2, ...}.
ADMIT_LUA = (
    WINDOW_LUA
    + """
local force = ARGV[1] == '1'
local out = {1, now}
for i = 1, #KEYS do
  local b = 1 + (i - 1) * 5
  local limit, win, need = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local sliding = ARGV[b + 5] == '1'
  local idx = math.floor(now / win)
  local cur = window_count(KEYS[i], idx)
  local prev = 0
  if sliding then prev = window_count(KEYS[i], idx - 1) end
  out[#out + 1] = prev
  out[#out + 1] = cur
  local full = cur + need > limit
  if sliding then full = prev * (win - now % win) + (cur + need) * win > limit * win end
  if not force and full then out[1] = 0 end
end
if out[1] == 0 then return out end
for i = 1, #KEYS do
  local b = 1 + (i - 1) * 5
  local win, charge = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 4])
  if charge > 0 then charge_window(KEYS[i], win, charge) end
end
return out
"""
)

# 10 000 identities of a few small dicts each: a few MiB at most while Redis is down.
_LOCAL_MAX_KEYS = 10_000


def limit_exceeded(window: Window, retry_after_s: float) -> LimitExceeded:
    """429 for one exhausted window."""
    what = {
        "rpm": f"{window.limit} requests per minute",
        "tpm": f"{window.limit} tokens per minute",
        "tokens_per_day": f"a budget of {window.limit} tokens per day",
    }[window.reason]
    return LimitExceeded(
        f"Rate limit reached: {what}. Retry after {math.ceil(retry_after_s)} s.",
        reason=window.reason,
        retry_after=retry_after_s,
    )


def _exceeded(window: Window, prev: int, cur: int, now_ms: int) -> LimitExceeded:
    # At least 1 s: Retry-After is whole seconds, and 0 would invite a busy loop.
    return limit_exceeded(window, max(retry_after_ms(prev, cur, now_ms, window), 1000) / 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)


class RateLimiter:
    """``admit`` before a request, ``charge`` after it; Redis first, local on failure."""

    def __init__(
        self,
        config: LimitsConfig,
        redis: SharedRedis,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._sliding = config.algorithm == "sliding"
        self._replicas = config.replicas
        self._redis = redis
        self._clock_ms = clock_ms
        self.local = LocalWindows(_LOCAL_MAX_KEYS)
        self.fallbacks = 0  # decisions taken locally because Redis was unavailable
        self._lua: AsyncScript | None = None

    def now_ms(self) -> int:
        """This replica's clock (the local fallback's; Redis decisions use Redis's TIME)."""
        return self._clock_ms()

    def windows(self, quota: Quota, *, tokens: int | None = None) -> list[Window]:
        """Admission windows (``tokens`` None), or the token windows charging ``tokens``."""
        specs = [("tpm", quota.tpm, MINUTE_MS, self._sliding)]
        specs.append(("tokens_per_day", quota.tokens_per_day, DAY_MS, False))
        if tokens is None:
            specs.insert(0, ("rpm", quota.rpm, MINUTE_MS, self._sliding))
        out = []
        for reason, limit, window_ms, sliding in specs:
            if limit is None:
                continue
            if tokens is None:
                charge = 1 if reason == "rpm" else 0
                out.append(Window(reason, limit, window_ms, sliding, need=1, charge=charge))
            else:
                out.append(Window(reason, limit, window_ms, sliding, need=0, charge=tokens))
        return out

    def keys(self, identity: str, windows: Sequence[Window]) -> list[str]:
        # {identity}: a hash tag keeps one identity's windows in one Redis Cluster slot.
        return [self._redis.key("limit", "{" + identity + "}", w.reason) for w in windows]

    async def admit(self, identity: str, quota: Quota) -> None:
        """Take one request slot, or raise ``LimitExceeded`` with the wait until one frees."""
        windows = self.windows(quota)
        if not windows:
            return
        keys = self.keys(identity, windows)
        try:
            reply = await self._script(keys, windows, force=False)
        except StateUnavailable:
            self._admit_locally(keys, windows)
            return
        if reply[0] == 1:
            return
        now_ms = int(reply[1])
        for i, window in enumerate(windows):
            prev, cur = int(reply[2 + 2 * i]), int(reply[3 + 2 * i])
            if not allows(prev, cur, now_ms, window):
                raise _exceeded(window, prev, cur, now_ms)
        raise limit_exceeded(windows[0], 1.0)  # Lua's and Python's rounding disagreed at the edge

    def _admit_locally(self, keys: list[str], windows: list[Window]) -> None:
        self.fallbacks += 1
        local = [self.local_window(w) for w in windows]
        now_ms = self._clock_ms()
        full = self.local.admit(keys, now_ms, local)
        if full is not None:
            prev, cur = self.local.counts(keys[local.index(full)], now_ms, full)
            raise _exceeded(full, prev, cur, now_ms)

    def local_window(self, window: Window) -> Window:
        """``window`` as this replica enforces it alone: its limit divided by the replicas."""
        limit = max(1, math.ceil(window.limit / self._replicas))
        return Window(
            window.reason, limit, window.window_ms, window.sliding, window.need, window.charge
        )

    async def charge(self, identity: str, quota: Quota, tokens: int) -> None:
        """Count ``tokens`` against tpm and the daily budget; never raises."""
        windows = self.windows(quota, tokens=tokens)
        if not windows or tokens <= 0:
            return
        keys = self.keys(identity, windows)
        try:
            await self._script(keys, windows, force=True)
        except StateUnavailable:
            self.charge_locally(keys, windows, tokens)

    def charge_locally(self, keys: list[str], windows: Sequence[Window], tokens: int) -> None:
        """``charge`` in this replica's memory (Redis is unavailable)."""
        self.fallbacks += 1
        now_ms = self._clock_ms()
        for key, window in zip(keys, windows, strict=True):
            self.local.add(key, now_ms, self.local_window(window), tokens)

    async def _script(self, keys: list[str], windows: Sequence[Window], *, force: bool) -> Any:
        args: list[str | int] = ["1" if force else "0"]
        for w in windows:
            args += [w.limit, w.window_ms, w.need, w.charge, "1" if w.sliding else "0"]

        async def call(client: Redis) -> Any:
            if self._lua is None:
                self._lua = client.register_script(ADMIT_LUA)  # EVALSHA, loads on NOSCRIPT
            return await self._lua(keys=keys, args=args)

        return await self._redis.run("limits", call)
