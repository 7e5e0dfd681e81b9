"""The server's adapters to the router's seams: shared statistics and pool saturation."""

from __future__ import annotations

import time

from core.request import Decision
from core.result import PolicyResult, ResultChoice
from core.usage import TokenUsage, UsageLedger
from policies.single import SingleParams
from server.router_seams import PoolSaturation, SharedRouterStats
from state.config import RedisConfig
from state.redis import SharedRedis
from state.stats import RouterStats, observation
from workers.config import PoolConfig, TierConfig
from workers.pool import WorkerPool
from workers.signals import WorkerLoad

A, B = "http://127.0.0.1:1", "http://127.0.0.1:2"


def pool() -> WorkerPool:
    tiers = {"small": TierConfig(model="m", endpoints=(A, B))}
    return WorkerPool(tiers, PoolConfig())


async def test_a_tier_is_as_saturated_as_its_least_loaded_worker() -> None:
    p = pool()
    load = PoolSaturation(p)
    assert load.saturation("small") is None  # nothing scraped yet: unknown, not idle
    now = time.monotonic()
    p.signals.update(A, WorkerLoad(running=4, waiting=8, kv_usage=0.5, at=now))
    assert load.saturation("small") == 1.0  # twice as many waiting as running
    p.signals.update(B, WorkerLoad(running=4, waiting=0, kv_usage=0.3, at=now))
    assert load.saturation("small") == 0.3  # the balancer will send the next call to B
    assert load.saturation("large") is None
    await p.close()


def finished(samples: int, tokens: int) -> tuple[Decision, PolicyResult]:
    ledger = UsageLedger()
    ledger.add("sample", "small", TokenUsage(tokens - 1, 1))
    result = PolicyResult((ResultChoice(0, "x", "stop"),), ledger, {"samples": samples})
    return Decision("small", SingleParams(), 0.2, "easy"), result


async def test_shared_stats_totals_sum_every_group_of_the_window() -> None:
    stats = RouterStats(SharedRedis(RedisConfig()))  # no Redis: this replica's history
    for samples, tokens in ((1, 10), (3, 30)):
        stats.record(observation(*finished(samples, tokens)))
    shared = SharedRouterStats(stats)
    shared.record(*finished(9, 90))  # the router's recorder: the one path that records
    totals = await shared.totals(300)
    assert (totals.requests, totals.samples, totals.tokens) == (3, 13, 130)
    assert totals.mean("samples") == 13 / 3
