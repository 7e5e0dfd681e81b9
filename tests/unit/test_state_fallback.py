"""The Redis circuit breaker and the bounded buffers that keep the gateway up without Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from core.request import Decision
from core.result import PolicyResult, ResultChoice
from core.usage import TokenUsage, UsageLedger
from policies.adaptive_bon import AdaptiveBonParams
from state.config import RedisConfig
from state.redis import RedisBreaker, SharedRedis, StateUnavailable
from state.stats import Observation, RouterStats, observation


def state(breaker: RedisBreaker) -> str:
    return breaker.state


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    now = [0.0]
    breaker = RedisBreaker(failures_to_open=3, open_s=5.0, clock=lambda: now[0])
    breaker.failure()
    breaker.success()  # a success resets the count
    for _ in range(2):
        breaker.failure()
    assert state(breaker) == "closed" and breaker.allow()
    breaker.failure()
    assert state(breaker) == "open" and not breaker.allow()
    now[0] = 5.0
    assert breaker.allow() and state(breaker) == "half_open"
    assert not breaker.allow()  # one probe at a time
    breaker.failure()
    assert state(breaker) == "open" and breaker.opened == 1
    now[0] = 10.0
    assert breaker.allow()
    breaker.success()
    assert state(breaker) == "closed" and breaker.allow()


def test_a_probe_that_never_reports_does_not_wedge_the_breaker() -> None:
    now = [0.0]
    breaker = RedisBreaker(failures_to_open=1, open_s=5.0, clock=lambda: now[0])
    breaker.failure()
    now[0] = 5.0
    assert breaker.allow()  # the probe's caller is cancelled and never reports
    now[0] = 9.9
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.allow()


async def test_unconfigured_redis_is_unavailable_without_any_io() -> None:
    redis = SharedRedis(RedisConfig())
    assert not redis.configured and not redis.available
    called = False

    async def never(_: Any) -> None:
        nonlocal called
        called = True

    try:
        await redis.run("x", never)
    except StateUnavailable:
        pass
    assert not called and redis.calls == 0


async def test_dead_redis_opens_the_breaker_then_fails_fast() -> None:
    # Port 1 on loopback refuses connections at once.
    redis = SharedRedis(RedisConfig(url="redis://127.0.0.1:1/0", failures_to_open=2, open_s=60))
    try:
        for _ in range(2):
            assert not await redis.ping()
        assert state(redis.breaker) == "open" and redis.errors == 2
        assert not await redis.ping()
        assert redis.calls == 2  # the third call never reached the network
    finally:
        await redis.close()


class DownRedis(SharedRedis):
    def __init__(self) -> None:
        super().__init__(RedisConfig(url="redis://127.0.0.1:1/0"))

    async def run(self, op: str, fn: Any) -> Any:
        raise StateUnavailable(op)


def obs(tier: str, difficulty: float | None = 0.5) -> Observation:
    return Observation(tier, "single", None, difficulty, samples=1, tokens=10, agreement=None)


async def test_stats_buffer_is_bounded_while_redis_is_down() -> None:
    stats = RouterStats(DownRedis(), max_pending=3, clock=lambda: 600.0)
    for i in range(10):
        stats.record(obs(f"tier{i}"))
    stats.record(obs("tier0"))  # an existing group still counts
    assert not await stats.flush()
    assert stats.pending_groups == 3 and stats.dropped == 7
    table = await stats.snapshot(windows=1)  # this replica's own history
    assert table[("tier0", "single", "-", "5")].requests == 2


async def test_stats_without_redis_keep_a_local_history_of_windows() -> None:
    now = [0.0]
    stats = RouterStats(SharedRedis(RedisConfig()), window_s=60, retention=2, clock=lambda: now[0])
    stats.record(obs("small", 0.05))
    now[0] = 60.0
    stats.record(obs("small", 0.05))
    assert await stats.flush()
    assert (await stats.snapshot(windows=2))[("small", "single", "-", "0")].requests == 2
    now[0] = 240.0
    stats.record(obs("large"))
    assert ("small", "single", "-", "0") not in await stats.snapshot(windows=5)


def test_observation_counts_agreement_from_votes_and_every_token() -> None:
    ledger = UsageLedger()
    ledger.add("sample", "small", TokenUsage(30, 12))
    report = {"samples": 4, "votes": {"Paris": 3, "Lyon": 1}, "early_stopped": True}
    result = PolicyResult((ResultChoice(0, "Paris", "stop"),), ledger, report)
    seen = observation(Decision("small", AdaptiveBonParams(), difficulty=0.31), result)
    assert seen.agreement == 0.75 and seen.tokens == 42 and seen.samples == 4
    assert seen.group == ("small", "adaptive_bon", "-", "3") and seen.early_stopped


async def test_flush_loop_stops_cleanly() -> None:
    stats = RouterStats(SharedRedis(RedisConfig()), flush_s=0.01)
    before = asyncio.all_tasks()
    stats.start()
    (loop,) = asyncio.all_tasks() - before
    await asyncio.sleep(0.03)
    assert not loop.done()  # the loop keeps flushing until closed
    await asyncio.wait_for(stats.close(), timeout=1.0)
    assert loop.cancelled()
