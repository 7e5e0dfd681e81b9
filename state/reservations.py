"""Reservations against a key's daily token budget: a request's worst case is held before it
is dispatched and settled to its real spend when it ends.

Without them a burst of N concurrent requests, each admitted while the day still had room,
could overshoot a budget by N requests' worth: each is charged only when it ends. With them,
``reserve`` grants a request its worst case only while ``spent today + reserved + ask <=
tokens_per_day`` holds, atomically in one Lua script (Redis's TIME, so replicas agree), and
``settle`` releases the reservation and adds the real spend in one more: reserved plus spent
never passes the budget, so neither does the spend, as long as no request spends more than
it reserved (``policies.worst_case``; a shrunk reservation is enforced as the request's
contract). A request that asks for less than its whole worst case (``least``, the ``shrink``
terms) is granted whatever room is left if that is at least ``least``.

Redis keys per identity (the ``{identity}`` hash tag keeps them in the slot of its limits):
``limit:{id}:tokens_per_day`` (the spend per UTC day, ``state.limits``; read here),
``reserved:{id}`` (hash: reservation id -> tokens, and ``total``) and
``reserved:{id}:expiry`` (sorted set: reservation id -> when it expires, Redis ms). Every
reservation expires at its request's deadline plus ``limits.reservation_margin_s``; each
``reserve`` first sweeps the expired ones, so a replica that dies mid-request holds its
reservations no longer than that. A settlement that arrives after its reservation expired
releases nothing and still adds the spend.

While Redis is unavailable reservations are held in this replica's memory (``LocalHolds``)
against the budget divided by ``limits.replicas`` and this replica's local spend: the same
approximation as the other limits. A reservation taken in Redis whose settlement cannot reach
it is charged locally and left to expire in Redis.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import Redis
from redis.commands.core import AsyncScript

from core.errors import LimitExceeded
from state.keys import Quota
from state.limits import RateLimiter, limit_exceeded
from state.redis import SharedRedis, StateUnavailable
from state.windows import DAY_MS, WINDOW_LUA, Window

# KEYS: spend hash of the day, reservation hash, expiry set.
# ARGV: budget, day_ms, reservation id, want, least, ttl_ms.
# Returns {granted, now_ms, spent, reserved, earliest expiry (0: none)}; granted 0: refused.
RESERVE_LUA = (
    WINDOW_LUA
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, id in ipairs(expired) do
  local held = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  redis.call('HDEL', KEYS[2], id)
  redis.call('HINCRBY', KEYS[2], 'total', -held)
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
local budget, day = tonumber(ARGV[1]), tonumber(ARGV[2])
local want, least, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local spent = window_count(KEYS[1], math.floor(now / day))
local reserved = tonumber(redis.call('HGET', KEYS[2], 'total') or '0')
local grant = math.min(want, budget - spent - reserved)
if grant < least then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  return {0, now, spent, reserved, tonumber(first[2] or '0')}
end
redis.call('HSET', KEYS[2], ARGV[3], grant)
redis.call('HINCRBY', KEYS[2], 'total', grant)
redis.call('ZADD', KEYS[3], now + ttl, ARGV[3])
local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
local keep = tonumber(last[2]) - now + 1000
redis.call('PEXPIRE', KEYS[2], keep)
redis.call('PEXPIRE', KEYS[3], keep)
return {grant, now, spent, reserved, 0}
"""
)

# KEYS: reservation hash, expiry set, then one hash per charged window (state.limits layout).
# ARGV: reservation id, then per window: window_ms, tokens. Returns the tokens released.
SETTLE_LUA = (
    WINDOW_LUA
    + """
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if held > 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  if redis.call('HINCRBY', KEYS[1], 'total', -held) <= 0 and redis.call('HLEN', KEYS[1]) == 1 then
    redis.call('DEL', KEYS[1], KEYS[2])
  end
end
for i = 3, #KEYS do
  local b = 2 + (i - 3) * 2
  local win, tokens = tonumber(ARGV[b]), tonumber(ARGV[b + 1])
  if tokens > 0 then charge_window(KEYS[i], win, tokens) end
end
return held
"""
)


@dataclass(frozen=True)
class Reservation:
    """Tokens held for one request; ``wanted`` is its worst case (more when it was shrunk)."""

    id: str
    identity: str
    tokens: int
    wanted: int
    local: bool = False  # held in this replica's memory: Redis was unavailable

    @property
    def shrunk(self) -> bool:
        return self.tokens < self.wanted


@dataclass(frozen=True)
class Refusal:
    """Why a reservation was refused: ``cause`` is ``spent`` (the day's spend alone leaves no
    room: wait for the next UTC day) or ``reserved`` (requests in flight hold the room: it
    frees when they settle, at the latest when the earliest of them expires)."""

    budget: int
    cause: str
    retry_after_s: float

    def error(self) -> LimitExceeded:
        window = Window("tokens_per_day", self.budget, DAY_MS, sliding=False)
        return limit_exceeded(window, self.retry_after_s)


def refusal(budget: int, least: int, now: int, spent: int, earliest: int) -> Refusal:
    to_next_day = DAY_MS - now % DAY_MS
    if spent + least > budget or earliest <= now:
        return Refusal(budget, "spent", max(to_next_day, 1000) / 1000)
    # At least 1 s: Retry-After is whole seconds, and 0 would invite a busy loop.
    return Refusal(budget, "reserved", max(min(earliest - now, to_next_day), 1000) / 1000)


@dataclass
class LocalHolds:
    """This replica's reservations while Redis is unavailable: identity -> id -> (tokens,
    expiry ms); expired ones are swept on every ``reserve`` of their identity."""

    held: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)

    def reserved(self, identity: str, now: int) -> tuple[int, int]:
        """(tokens held, earliest expiry or 0) after sweeping the expired ones."""
        mine = {k: v for k, v in self.held.get(identity, {}).items() if v[1] > now}
        self.held[identity] = mine
        expiries = [expiry for _, expiry in mine.values()]
        return sum(tokens for tokens, _ in mine.values()), min(expiries, default=0)

    def release(self, reservation: Reservation) -> None:
        mine = self.held.get(reservation.identity, {})
        mine.pop(reservation.id, None)
        if not mine:
            self.held.pop(reservation.identity, None)


class BudgetReservations:
    """``reserve`` before dispatch, ``settle`` once when the request ends."""

    def __init__(self, limiter: RateLimiter, redis: SharedRedis) -> None:
        self._limiter = limiter
        self._redis = redis
        self.local = LocalHolds()
        self._scripts: dict[str, AsyncScript] = {}

    def _day(self, budget: int) -> Window:
        return Window("tokens_per_day", budget, DAY_MS, sliding=False)

    def _keys(self, identity: str) -> list[str]:
        tag = "{" + identity + "}"
        return [self._redis.key("reserved", tag), self._redis.key("reserved", tag, "expiry")]

    async def reserve(
        self, identity: str, budget: int, want: int, least: int, ttl_s: float
    ) -> Reservation | Refusal:
        """Hold ``want`` tokens, or as many as are left if that is at least ``least``."""
        rid = uuid.uuid4().hex
        day = self._day(budget)
        keys = [*self._limiter.keys(identity, [day]), *self._keys(identity)]
        args: list[Any] = [budget, DAY_MS, rid, want, least, max(1, math.ceil(ttl_s * 1000))]
        try:
            reply = await self._run(RESERVE_LUA, keys, args)
        except StateUnavailable:
            return self._reserve_locally(identity, rid, day, keys[0], want, least, ttl_s)
        granted, now, spent, reserved, earliest = (int(x) for x in reply)
        if granted > 0:
            return Reservation(rid, identity, granted, want)
        return refusal(budget, least, now, spent, earliest)

    def _reserve_locally(
        self, identity: str, rid: str, day: Window, key: str, want: int, least: int, ttl_s: float
    ) -> Reservation | Refusal:
        self._limiter.fallbacks += 1
        local = self._limiter.local_window(day)
        now = self._limiter.now_ms()
        _, spent = self._limiter.local.counts(key, now, local)
        reserved, earliest = self.local.reserved(identity, now)
        granted = min(want, local.limit - spent - reserved)
        if granted < least:
            return refusal(local.limit, least, now, spent, earliest)
        expiry = now + max(1, math.ceil(ttl_s * 1000))
        self.local.held.setdefault(identity, {})[rid] = (granted, expiry)
        return Reservation(rid, identity, granted, want, local=True)

    async def settle(self, reservation: Reservation, quota: Quota, tokens: int) -> None:
        """Release ``reservation`` and charge ``tokens`` to tpm and the budget; never raises."""
        windows = self._limiter.windows(quota, tokens=max(tokens, 0))
        charged = self._limiter.keys(reservation.identity, windows)
        if reservation.local:
            self.local.release(reservation)
            await self._limiter.charge(reservation.identity, quota, tokens)
            return
        args: list[Any] = [reservation.id]
        for window in windows:
            args += [window.window_ms, window.charge]
        try:
            await self._run(SETTLE_LUA, [*self._keys(reservation.identity), *charged], args)
        except StateUnavailable:  # the reservation expires in Redis; the spend counts here
            if tokens > 0:
                self._limiter.charge_locally(charged, windows, tokens)

    async def _run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        async def call(client: Redis) -> Any:
            script = self._scripts.get(source)
            if script is None:  # EVALSHA, loads the script on NOSCRIPT
                script = self._scripts[source] = client.register_script(source)
            return await script(keys=keys, args=args)

        return await self._redis.run("reservations", call)
