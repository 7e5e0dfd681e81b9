"""``SharedState``: everything in ``state/`` one gateway needs, built from its config sections.

The server creates one in its lifespan, calls ``start()`` inside the running loop and
``close()`` on shutdown; nothing here connects at construction (redis-py connects lazily).
"""

from __future__ import annotations

from state.cache import ResponseCache
from state.config import AuthConfig, CacheConfig, LimitsConfig, RedisConfig, ResponsesConfig
from state.keys import KeyStore
from state.limits import RateLimiter
from state.redis import RedisObserver, SharedRedis
from state.responses import ResponseStore
from state.stats import RouterStats


class SharedState:
    def __init__(
        self,
        redis: RedisConfig,
        auth: AuthConfig,
        limits: LimitsConfig,
        cache: CacheConfig,
        observer: RedisObserver | None = None,
        responses: ResponsesConfig | None = None,
    ) -> None:
        self.auth = auth
        self.limits_config = limits
        self.redis = SharedRedis(redis, observer)
        self.keys = KeyStore(auth, limits, self.redis)
        self.limiter = RateLimiter(limits, self.redis)
        self.cache = ResponseCache(cache, self.redis)
        self.stats = RouterStats(self.redis)
        self.responses = ResponseStore(responses or ResponsesConfig(), self.redis)

    def start(self) -> None:
        self.redis.start()
        self.stats.start()

    async def close(self) -> None:
        await self.stats.close()
        await self.redis.close()
