"""Pool behaviour under faults a real vLLM worker cannot produce on demand.

Every test here runs against ``FakeUpstream`` (tests/reliability/fake_upstream.py): small fake
OpenAI servers on real sockets, so timeouts, resets and disconnects are the real thing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.errors import DeadlineExceeded, UpstreamUnavailable
from tests.reliability.fake_upstream import MODEL, TOKENS, FakeUpstream, eventually
from workers.balance import rendezvous_order
from workers.config import BreakerConfig, PoolConfig, TierConfig
from workers.pool import StreamInterrupted, WorkerPool

MSG = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    a, b = await FakeUpstream().start(), await FakeUpstream().start()
    yield a, b
    await a.close()
    await b.close()


def pool_of(
    *upstreams: FakeUpstream, tier: dict[str, Any] | None = None, **pool: Any
) -> WorkerPool:
    config = PoolConfig(
        **{"affinity": "caller", "breaker": BreakerConfig(failure_threshold=1), **pool}
    )
    urls = tuple(u.url for u in upstreams)
    return WorkerPool({"t": TierConfig(model=MODEL, endpoints=urls, **(tier or {}))}, config)


def key_for(first: FakeUpstream, *upstreams: FakeUpstream) -> str:
    """An affinity key whose rendezvous choice is ``first``."""
    urls = [u.url for u in upstreams]
    want = urls.index(first.url)
    return next(k for k in map(str, range(1000)) if rendezvous_order(k, urls)[0] == want)


async def test_slow_first_byte_of_a_stream_is_retried_on_another_worker(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    """Fake upstream: ``a`` sends nothing for 5 s; the stream idle timeout is 0.3 s."""
    a, b = fakes
    a.mode, a.delay_s = "slow", 5.0
    pool = pool_of(a, b, tier={"stream_idle_timeout_s": 0.3})
    started = time.monotonic()
    text = "".join([d.text async for d in pool.stream_chat("t", MSG, affinity=key_for(a, a, b))])
    assert text == "x" * TOKENS and b.finished == 1 and a.finished == 0
    assert time.monotonic() - started < 2.0
    assert pool.counters.retries == {"t": 1}
    await pool.close()


async def test_a_call_never_outlives_its_tier_timeout_even_across_retries(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    """Fake upstream: both workers answer only after 5 s; the tier's timeout is 0.5 s."""
    a, b = fakes
    for fake in fakes:
        fake.mode, fake.delay_s = "slow", 5.0
    pool = pool_of(a, b, tier={"request_timeout_s": 0.5})
    started = time.monotonic()
    with pytest.raises((DeadlineExceeded, UpstreamUnavailable)):
        await pool.chat("t", MSG)
    assert time.monotonic() - started < 1.0  # the retry got only what was left
    await pool.close()


async def test_service_deadline_cancels_the_upstream_call_without_blaming_the_worker(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    """Fake upstream: ``a`` never answers; the caller's own deadline (asyncio.timeout) fires."""
    a, b = fakes
    a.mode = "hang"
    pool = pool_of(a, b)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await pool.chat("t", MSG, affinity=key_for(a, a, b))
    await eventually(lambda: a.aborted_by_client > 0, 1.0)  # noticed within a few ticks
    assert a.aborted_by_client == 1 and b.chats == 0
    assert pool.counters.failures == {} and pool.workers["t"][0].in_flight == 0
    await pool.close()


async def test_503_is_retried_and_a_whole_tier_of_503s_is_unavailable(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    """Fake upstream: ``a`` (then both) answer 503."""
    a, b = fakes
    a.mode = "503"
    pool = pool_of(a, b, retry_after_s=4)
    done = await pool.chat("t", MSG, affinity=key_for(a, a, b))
    assert done.choices[0].text == "x" * TOKENS and (a.chats, b.chats) == (1, 1)
    await pool.close()
    b.mode = "503"
    # Their calls fail while their checks pass: the next try is the end of a 10 s backoff,
    # beyond the 4 s cap.
    pool = pool_of(
        a, b, retry_after_s=4, breaker=BreakerConfig(failure_threshold=1, open_base_s=10)
    )
    with pytest.raises(UpstreamUnavailable, match="worker answered 503") as info:
        await pool.chat("t", MSG)
    assert info.value.retry_after == 4
    await pool.close()


async def test_death_mid_stream_ends_the_stream_with_usage_so_far_and_no_replay(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    """Fake upstream: ``a`` resets the connection after 3 tokens. With logprobs the stream
    cannot be continued elsewhere (tests/unit/test_engines_resume.py: streams that can)."""
    a, b = fakes
    a.mode, a.die_after = "die", 3
    pool = pool_of(a, b)
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        body = {**MSG, "logprobs": True}
        async for delta in pool.stream_chat("t", body, affinity=key_for(a, a, b)):
            got.append(delta.text)
    assert "".join(got) == "xxx" and a.died == 1
    assert b.chats == 0  # half an answer is never replayed from another worker
    assert info.value.usage.completion_tokens == 3
    await pool.close()


async def test_call_on_a_hung_worker_moves_once_health_checks_eject_it(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    """Fake upstream: ``a`` takes the call, then stops answering anything, ``/health`` included
    (a hung process or a lost node: no connection reset ever comes)."""
    a, b = fakes
    a.mode = "hang"
    pool = pool_of(
        a,
        b,
        health_interval_s=0.2,
        health_timeout_s=0.2,
        breaker=BreakerConfig(failure_threshold=3),
    )
    await pool.start()
    call = asyncio.create_task(pool.chat("t", MSG, affinity=key_for(a, a, b)))
    while a.chats == 0:
        await asyncio.sleep(0.01)
    a.health = "hang"
    started = time.monotonic()
    done = await asyncio.wait_for(call, 5.0)
    assert done.choices[0].text == "x" * TOKENS and b.finished == 1
    assert time.monotonic() - started < 3 * (0.2 + 0.2) + 0.5  # three failed checks
    assert pool.ready() == {"t": True} and pool.workers["t"][0].healthy is False
    await pool.close()


async def test_a_saturated_worker_that_keeps_streaming_is_busy_not_ejected(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    """Fake upstream: ``a`` streams slowly while its ``/health`` never answers in time, as a
    saturated vLLM does; once its call ends, the same timeouts do eject it."""
    a, b = fakes
    a.token_delay_s = 0.2  # 8 tokens: a 1.6 s stream
    pool = pool_of(
        a,
        b,
        health_interval_s=0.1,
        health_timeout_s=0.2,
        busy_grace_s=0.5,
        breaker=BreakerConfig(failure_threshold=3),
    )
    await pool.start()
    worker = pool.workers["t"][0]
    assert worker.healthy is True
    a.health = "hang"
    text = [d.text async for d in pool.stream_chat("t", MSG, affinity=key_for(a, a, b))]
    assert "".join(text) == "x" * TOKENS and b.chats == 0  # never moved, never cut
    assert worker.breaker.ejections == 0  # ~5 timed-out checks during the stream: all excused
    assert await eventually(lambda: worker.breaker.ejections == 1, 3.0)
    await pool.close()


async def test_recent_progress_excuses_timed_out_checks_only_for_the_grace(
    fakes: tuple[FakeUpstream, FakeUpstream],
) -> None:
    """Fake upstream: ``a`` answers one call, then hangs (calls and ``/health``): its earlier
    progress excuses the timeouts for ``busy_grace_s``, no longer; then the call moves to b."""
    a, b = fakes
    # Threshold 3: a single slow check of the idle b on a busy machine must not eject it.
    pool = pool_of(
        a,
        b,
        health_interval_s=0.1,
        health_timeout_s=0.2,
        busy_grace_s=0.4,
        breaker=BreakerConfig(failure_threshold=3),
    )
    await pool.start()
    on_a = key_for(a, a, b)
    assert (await pool.chat("t", MSG, affinity=on_a)).choices[0].text == "x" * TOKENS
    a.mode, a.health = "hang", "hang"
    started = time.monotonic()
    done = await asyncio.wait_for(pool.chat("t", MSG, affinity=on_a), 5.0)
    assert done.choices[0].text == "x" * TOKENS and b.finished == 1
    assert pool.workers["t"][0].breaker.ejections == 1
    assert time.monotonic() - started >= 0.4 - 0.15  # not before the grace (minus one check)
    await pool.close()
