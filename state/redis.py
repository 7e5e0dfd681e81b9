"""``SharedRedis``: the one Redis client of a gateway, behind a deadline and a circuit breaker.

Every call goes through ``run(op, fn)``: it raises ``StateUnavailable`` at once when Redis is
not configured or the breaker is open, and otherwise runs ``fn(client)`` within
``redis.timeout_s``. Errors and timeouts count towards opening the breaker; callers catch
``StateUnavailable`` and fall back to local state, so a slow or dead Redis costs at most one
timeout per call while the breaker closes, and nothing once it is open.

RedisBreaker states::

    closed --(failures_to_open consecutive failures)--> open
    open   --(open_s elapsed: the next call is the probe)--> half_open
    half_open --(open_s without an answer: another probe)--> half_open
    half_open --(probe succeeds)--> closed      half_open --(probe fails)--> open

A maintenance task probes with PING while the breaker is open, so it recovers even when no
request needs Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from state.config import RedisConfig

log = logging.getLogger("ttc.state")
T = TypeVar("T")
BreakerState = Literal["closed", "open", "half_open"]


class StateUnavailable(Exception):
    """Redis is not configured, the breaker is open, or this call failed: use the fallback."""


class RedisObserver(Protocol):
    """Receives every Redis call's latency and outcome (``error`` is None on success)."""

    def redis_call(self, op: str, seconds: float, error: str | None) -> None: ...


class RedisBreaker:
    """Consecutive-failure circuit breaker with a single half-open probe."""

    def __init__(
        self, failures_to_open: int, open_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures_to_open
        self._open_s = open_s
        self._clock = clock
        self.state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self.opened = 0  # times it opened from closed (failed probes only re-open it)

    def allow(self) -> bool:
        """May a call go to Redis now? In ``open`` past ``open_s``, lets exactly one probe out."""
        if self.state == "closed":
            return True
        # A probe that never reported (its caller was cancelled) frees the slot after open_s.
        if self._clock() - self._opened_at >= self._open_s:
            self.state = "half_open"
            self._opened_at = self._clock()
            return True
        return False

    def success(self) -> None:
        if self.state != "closed":
            log.warning("redis breaker closed: Redis answers again")
        self.state = "closed"
        self._failures = 0

    def failure(self) -> None:
        self._failures += 1
        if self.state == "half_open" or self._failures >= self._threshold:
            if self.state == "closed":
                self.opened += 1
                log.warning("redis breaker open: shared state falls back to local")
            self.state = "open"
            self._opened_at = self._clock()


def _client(config: RedisConfig, url: str) -> aioredis.Redis:
    """No retries (the breaker decides), and waiting for a pooled connection counts against
    the same deadline as the call, so a saturated pool looks like a slow Redis."""
    no_retry = Retry(NoBackoff(), 0)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=config.max_connections,
        timeout=config.timeout_s,
        socket_timeout=config.timeout_s,
        socket_connect_timeout=config.timeout_s,
        retry=no_retry,
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it


class SharedRedis:
    """One ``redis.asyncio`` client (or none), a breaker, and latency/error accounting."""

    def __init__(self, config: RedisConfig, observer: RedisObserver | None = None) -> None:
        self.config = config
        self.prefix = config.key_prefix
        self.breaker = RedisBreaker(config.failures_to_open, config.open_s)
        self._observer = observer
        self.errors = 0
        self.calls = 0
        self._client: aioredis.Redis | None = None
        self._probe_task: asyncio.Task[None] | None = None
        if config.url is not None:
            self._client = _client(config, config.url)

    @property
    def configured(self) -> bool:
        return self._client is not None

    @property
    def available(self) -> bool:
        """Configured and the breaker closed (no side effects: use ``run`` to probe)."""
        return self._client is not None and self.breaker.state == "closed"

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def run(self, op: str, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """``fn(client)`` within the deadline; ``StateUnavailable`` if it cannot or fails."""
        client = self._client
        if client is None or not self.breaker.allow():
            raise StateUnavailable(op)
        started = time.perf_counter()
        self.calls += 1
        try:
            async with asyncio.timeout(self.config.timeout_s):
                result = await fn(client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(op, started, exc)
            raise StateUnavailable(op) from exc
        self.breaker.success()
        self._observe(op, started, None)
        return result

    def _failed(self, op: str, started: float, exc: BaseException) -> None:
        self.errors += 1
        self.breaker.failure()
        timeout = isinstance(exc, TimeoutError | RedisTimeout)
        kind = "timeout" if timeout else type(exc).__name__
        self._observe(op, started, kind)
        log.debug("redis %s failed: %s", op, kind)

    def _observe(self, op: str, started: float, error: str | None) -> None:
        if self._observer is not None:
            self._observer.redis_call(op, time.perf_counter() - started, error)

    async def ping(self) -> bool:
        try:
            await self.run("ping", lambda c: c.ping())
        except StateUnavailable:
            return False
        return True

    def start(self) -> None:
        """Start the recovery probe (call inside the running loop, e.g. in the lifespan)."""
        if self._client is not None and self._probe_task is None:
            self._probe_task = asyncio.create_task(self._probe_loop())

    async def _probe_loop(self) -> None:
        # 4 checks per open period: recovery is noticed within a quarter of open_s.
        interval = self.config.open_s / 4
        while True:
            await asyncio.sleep(interval)
            if self.breaker.state != "closed":
                await self.ping()

    async def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
            self._probe_task = None
        if self._client is not None:
            await self._client.aclose()
