"""The budget controller: windowed statistics, offset updates, convergence on simulated traffic."""

from __future__ import annotations

import random

import pytest

from policies.config import PoliciesConfig
from router.bands import build_bands, select
from router.budget import BudgetController
from router.config import DEFAULT_BANDS, BudgetConfig
from router.stats import LocalStats, WindowTotals


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_local_stats_keep_a_sliding_window() -> None:
    clock = Clock()
    stats = LocalStats(clock)
    stats.add(samples=1, tokens=10)
    clock.now = 50
    stats.add(samples=3, tokens=30)
    assert await stats.totals(100) == WindowTotals(2, 4, 40)
    clock.now = 120
    totals = await stats.totals(100)
    assert totals == WindowTotals(1, 3, 30)
    assert (totals.mean("samples"), totals.mean("tokens")) == (3, 30)
    assert WindowTotals().mean("samples") is None


def controller(
    clock: Clock, stats: LocalStats, gain: float = 0.02, max_offset: float = 0.5
) -> BudgetController:
    settings = BudgetConfig(
        target=2.0, update_interval_s=10, min_requests=5, gain=gain, max_offset=max_offset
    )
    return BudgetController(settings, stats, clock)


async def test_offset_moves_against_the_error_and_only_on_schedule() -> None:
    clock, stats = Clock(), LocalStats()
    c = controller(clock, stats, gain=0.1)
    for _ in range(10):
        stats.add(samples=4, tokens=0)  # twice the target
    assert not await c.maybe_update()  # the interval has not passed
    clock.now = 10
    assert await c.maybe_update()
    assert c.offset == pytest.approx(0.1)  # gain * (4 - 2) / 2: cheaper bands
    assert c.window_mean == 4


async def test_offset_goes_negative_when_under_budget_and_is_clamped() -> None:
    clock, stats = Clock(), LocalStats()
    c = controller(clock, stats, gain=1.0, max_offset=0.3)
    for _ in range(10):
        stats.add(samples=1, tokens=0)
    clock.now = 10
    await c.maybe_update()
    assert c.offset == pytest.approx(-0.3)  # -0.5 clamped


async def test_too_few_requests_or_no_target_change_nothing() -> None:
    clock, stats = Clock(), LocalStats()
    c = controller(clock, stats)
    stats.add(samples=9, tokens=0)
    clock.now = 10
    assert not await c.maybe_update() and c.offset == 0
    off = BudgetController(BudgetConfig(), stats, clock)
    clock.now = 100
    assert not off.enabled and not await off.maybe_update()


# Samples each band spends: single, then adaptive_bon stopping early or running long.
BAND_COST = {"easy": 1, "medium": 3, "hard": 6}


@pytest.mark.parametrize("rate", [0.5, 5.0])
async def test_controller_settles_at_the_target_on_simulated_traffic(rate: float) -> None:
    """Uniform difficulty spends 3.35 samples a request uncontrolled; the target is 2.5."""
    clock = Clock()
    stats = LocalStats(clock)
    c = BudgetController(BudgetConfig(target=2.5), stats, clock)  # default gain and window
    bands = build_bands(DEFAULT_BANDS, PoliciesConfig())
    rng = random.Random(7)
    spent: list[tuple[float, int]] = []
    offsets: list[float] = []
    while clock.now < 3600:
        clock.now += rng.expovariate(rate)
        await c.maybe_update()
        cost = BAND_COST[select(bands, rng.random() - c.offset).name]
        stats.add(samples=cost, tokens=0)
        spent.append((clock.now, cost))
        if clock.now > 2400:
            offsets.append(c.offset)
    last = [cost for at, cost in spent if at > 2400]  # the last 20 minutes
    assert sum(last) / len(last) == pytest.approx(2.5, rel=0.08)
    assert 0.1 < min(offsets) and max(offsets) - min(offsets) < 0.12  # settled, not swinging
