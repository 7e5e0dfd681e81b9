"""Limit arithmetic at window edges, the Retry-After it promises, and the local fallback."""

from __future__ import annotations

import itertools

import pytest

from core.errors import LimitExceeded
from state.config import LimitsConfig, RedisConfig
from state.keys import Quota
from state.limits import RateLimiter
from state.redis import SharedRedis
from state.windows import (
    DAY_MS,
    MINUTE_MS,
    LocalWindows,
    Window,
    allows,
    estimate,
    retry_after_ms,
)

T0 = 1_700_000_040_000  # a minute boundary (divisible by 60 000)
FIXED = Window("rpm", 3, MINUTE_MS, sliding=False)
SLIDING = Window("rpm", 10, MINUTE_MS, sliding=True)


def test_fixed_window_refuses_until_the_last_millisecond_then_resets() -> None:
    assert T0 % MINUTE_MS == 0
    assert allows(0, 2, T0 + 59_999, FIXED)
    assert not allows(0, 3, T0 + 59_999, FIXED)
    assert retry_after_ms(0, 3, T0 + 59_999, FIXED) == 1
    # One millisecond later the window is new: the 3 become the previous window, ignored.
    assert allows(3, 0, T0 + 60_000, FIXED)


def test_sliding_window_weights_the_previous_window_by_its_overlap() -> None:
    assert estimate(10, 0, T0, SLIDING) == 10.0
    assert estimate(10, 0, T0 + 30_000, SLIDING) == 5.0
    assert estimate(10, 2, T0 + 45_000, SLIDING) == 4.5
    assert not allows(10, 0, T0, SLIDING)  # a burst at the edge is still counted in full
    assert allows(10, 0, T0 + 30_000, SLIDING)


def test_sliding_retry_after_is_exactly_when_room_appears() -> None:
    wait = retry_after_ms(10, 0, T0, SLIDING)
    assert wait == 6_000  # 10 * (1 - f) + 1 <= 10  <=>  f >= 0.1 of a minute
    assert not allows(10, 0, T0 + wait - 1, SLIDING)
    assert allows(10, 0, T0 + wait, SLIDING)


def test_current_window_full_waits_into_the_next_one() -> None:
    now = T0 + 30_000
    wait = retry_after_ms(0, 10, now, SLIDING)
    assert wait == 30_000 + 6_000
    later = now + wait  # next window: the 10 are now its previous window
    assert allows(10, 0, later, SLIDING)
    assert not allows(10, 0, later - 1, SLIDING)


def counts_at(prev: int, cur: int, now: int, later: int, window_ms: int) -> tuple[int, int]:
    """The (prev, cur) counts seen at ``later`` when nothing else was counted since ``now``."""
    steps = later // window_ms - now // window_ms
    if steps == 0:
        return prev, cur
    return (cur, 0) if steps == 1 else (0, 0)


@pytest.mark.parametrize("sliding", [True, False])
def test_retry_after_never_promises_too_early_or_too_late(sliding: bool) -> None:
    window = Window("tpm", 10, MINUTE_MS, sliding=sliding)
    grid = itertools.product(range(0, 14, 3), range(0, 14, 2), range(0, MINUTE_MS, 7_001))
    for prev, cur, pos in grid:
        now = T0 + pos
        if allows(prev, cur, now, window):
            continue
        wait = retry_after_ms(prev, cur, now, window)
        assert wait > 0
        later = now + wait
        assert allows(*counts_at(prev, cur, now, later, MINUTE_MS), later, window), (prev, cur)
        assert not allows(*counts_at(prev, cur, now, later - 1, MINUTE_MS), later - 1, window)


def test_local_windows_charge_all_or_nothing() -> None:
    local = LocalWindows(max_keys=10)
    rpm = Window("rpm", 5, MINUTE_MS, sliding=False, charge=1)
    tpm = Window("tpm", 100, MINUTE_MS, sliding=False)
    local.add("tpm", T0, tpm, 100)
    assert local.admit(["rpm", "tpm"], T0, [rpm, tpm]) is tpm
    assert local.counts("rpm", T0, rpm) == (0, 0)  # the refused request took no slot


def test_local_windows_stay_bounded() -> None:
    local = LocalWindows(max_keys=3)
    for i in range(10):
        local.add(f"k{i}", T0, FIXED, 1)
    assert len(local) == 3
    assert local.counts("k9", T0, FIXED) == (0, 1)
    assert local.counts("k0", T0, FIXED) == (0, 0)


def limiter(now: list[int], **limits: int) -> RateLimiter:
    return RateLimiter(LimitsConfig(**limits), SharedRedis(RedisConfig()), lambda: now[0])


async def test_without_redis_the_local_limit_refuses_with_retry_after() -> None:
    now = [T0 + 10_000]
    rl = limiter(now, algorithm="fixed")  # type: ignore[arg-type]
    quota = Quota(rpm=3)
    for _ in range(3):
        await rl.admit("alice", quota)
    with pytest.raises(LimitExceeded) as info:
        await rl.admit("alice", quota)
    assert info.value.reason == "rpm" and info.value.status == 429
    assert info.value.retry_after == 50.0
    await rl.admit("bob", quota)  # identities are counted apart
    now[0] = T0 + MINUTE_MS
    await rl.admit("alice", quota)


async def test_local_fallback_divides_limits_between_replicas() -> None:
    rl = limiter([T0], replicas=2)
    quota = Quota(rpm=5)
    for _ in range(3):  # ceil(5 / 2)
        await rl.admit("alice", quota)
    with pytest.raises(LimitExceeded):
        await rl.admit("alice", quota)


async def test_tokens_are_charged_after_the_request_against_tpm_and_the_budget() -> None:
    now = [T0 + 5_000]
    rl = limiter(now)
    quota = Quota(tpm=100, tokens_per_day=150)
    await rl.admit("alice", quota)
    await rl.charge("alice", quota, 160)  # one request may overshoot by its own size
    with pytest.raises(LimitExceeded) as info:
        await rl.admit("alice", quota)
    assert info.value.reason == "tpm"
    now[0] += 2 * MINUTE_MS  # tpm has recovered, the day's budget has not
    with pytest.raises(LimitExceeded) as info:
        await rl.admit("alice", quota)
    assert info.value.reason == "tokens_per_day"
    assert info.value.code == "insufficient_quota"
    midnight = (now[0] // DAY_MS + 1) * DAY_MS
    assert info.value.retry_after == (midnight - now[0]) / 1000


async def test_no_quota_means_no_window_and_no_refusal() -> None:
    rl = limiter([T0])
    for _ in range(100):
        await rl.admit("anyone", Quota())
    assert len(rl.local) == 0
