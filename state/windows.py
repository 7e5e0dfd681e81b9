"""Window arithmetic of rate limits, shared by the Redis script and the local fallback.

A limit is ``limit`` units per ``window_ms``. Counts are kept per fixed window (index
``now // window_ms``). The *fixed* algorithm compares the current window's count; the
*sliding* one estimates the last ``window_ms`` as the current count plus the previous window's
count weighted by how much of it still overlaps (``prev * (1 - elapsed / window_ms)``), which
smooths the burst a fixed window allows at its edge, in O(1) memory.

A request passes a window when ``estimate + need <= limit``. ``need`` is 1 for every check:
a request takes one request slot, and for token limits it needs at least one token of room
(its real token count is charged after it ends).

``LocalWindows`` applies the same rules in process memory: the fallback while Redis is
unavailable. It is approximate by design: each replica counts only its own traffic, so its
limits are the shared ones divided by ``limits.replicas``, and what it counts is not merged
back into Redis.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MINUTE_MS = 60_000
DAY_MS = 86_400_000  # windows start at the Unix epoch, so a day window is a UTC day


# The windowed counters limits and reservations keep in Redis, as Lua both scripts start with:
# one hash per window (field: window index ``now // window_ms``, value: count), the previous
# window kept for sliding limits. ``now`` is Redis's clock in ms (every replica shares it);
# ``window_count`` reads one window; ``charge_window`` adds to the current one, drops older
# ones and keeps the hash for two windows.
WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function window_count(key, idx)
  return tonumber(redis.call('HGET', key, string.format('%d', idx)) or '0')
end
local function charge_window(key, win, tokens)
  local idx = math.floor(now / win)
  redis.call('HINCRBY', key, string.format('%d', idx), tokens)
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if tonumber(f) < idx - 1 then redis.call('HDEL', key, f) end
  end
  redis.call('PEXPIRE', key, 2 * win)
end
"""


@dataclass(frozen=True)
class Window:
    """One limit of one identity: ``reason`` names it in errors and metrics."""

    reason: str
    limit: int
    window_ms: int
    sliding: bool
    need: int = 1
    charge: int = 0


def index(now_ms: int, window_ms: int) -> int:
    return now_ms // window_ms


def estimate(prev: int, cur: int, now_ms: int, window: Window) -> float:
    """Units counted over the last ``window_ms`` (fixed: this window only)."""
    if not window.sliding:
        return float(cur)
    elapsed = (now_ms % window.window_ms) / window.window_ms
    return prev * (1.0 - elapsed) + cur


def allows(prev: int, cur: int, now_ms: int, window: Window) -> bool:
    """``estimate + need <= limit``, in integers (times ``window_ms``) so edges are exact."""
    if not window.sliding:
        return cur + window.need <= window.limit
    w = window.window_ms
    remaining = w - now_ms % w
    return prev * remaining + (cur + window.need) * w <= window.limit * w


def _first_pos(units: int, room: int, w: int) -> int:
    """The first position in a window where ``units * (w - pos) <= room * w``."""
    return w - (room * w) // units


def retry_after_ms(prev: int, cur: int, now_ms: int, window: Window) -> int:
    """How long until ``window`` would let the request pass, if nothing else is counted.

    Sliding: the previous window's weight decays linearly, so solve
    ``prev * (1 - f) + cur + need <= limit`` for the fraction ``f`` of this window; if the
    current count alone is too high, wait for the next window, where it becomes ``prev``.
    """
    w = window.window_ms
    pos = now_ms % w
    to_next = w - pos
    if not window.sliding:
        return to_next
    room = window.limit - window.need - cur
    if room >= 0:
        return 0 if prev <= 0 else max(_first_pos(prev, room, w) - pos, 0)
    room_next = window.limit - window.need
    if room_next < 0 or cur <= 0:
        return to_next
    return to_next + max(_first_pos(cur, room_next, w), 0)


class LocalWindows:
    """Per-replica counts with the same rules; at most ``max_keys`` keys (LRU) in memory."""

    def __init__(self, max_keys: int) -> None:
        self._max_keys = max_keys
        self._counts: OrderedDict[str, dict[int, int]] = OrderedDict()

    def counts(self, key: str, now_ms: int, window: Window) -> tuple[int, int]:
        """(previous window's count, current window's count)."""
        slots = self._counts.get(key, {})
        i = index(now_ms, window.window_ms)
        return slots.get(i - 1, 0), slots.get(i, 0)

    def add(self, key: str, now_ms: int, window: Window, units: int) -> None:
        i = index(now_ms, window.window_ms)
        slots = self._counts.pop(key, {})
        slots = {k: v for k, v in slots.items() if k >= i - 1}
        slots[i] = slots.get(i, 0) + units
        self._counts[key] = slots
        while len(self._counts) > self._max_keys:
            self._counts.popitem(last=False)

    def admit(self, keys: list[str], now_ms: int, windows: list[Window]) -> Window | None:
        """Charge every window and return None, or charge nothing and return the first full one."""
        for key, window in zip(keys, windows, strict=True):
            prev, cur = self.counts(key, now_ms, window)
            if not allows(prev, cur, now_ms, window):
                return window
        for key, window in zip(keys, windows, strict=True):
            if window.charge:
                self.add(key, now_ms, window, window.charge)
        return None

    def __len__(self) -> int:
        return len(self._counts)
