"""The router knows thinking: bands set a thinking budget per band on a reasoning tier, and
``reasoning_effort`` moves both the band and the budget (``router.thinking``)."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import InvalidRequest
from core.request import GenRequest
from policies.config import PoliciesConfig
from router.config import BandConfig, RouterConfig
from router.router import Router
from server.config import ConfigError, settings_from_dict
from tests.unit.test_router import constant
from workers.profiles import PRESETS

THINKER = PRESETS["smollm2_thinking"]  # budgets: minimal 0, low 32, medium 96, high 256
BANDS = (
    BandConfig(name="easy", upto=0.35, policy="single", thinking_budget=0),
    BandConfig(name="medium", upto=0.65, policy="single", thinking_budget=64),
    BandConfig(name="hard", policy="convergence", thinking_budget=512),
)


def router_at(difficulty: float, *, tiers: tuple[str, ...] = ("r",)) -> Router:
    config = RouterConfig(predictor=constant(difficulty), bands=BANDS, probe={"mode": "never"})
    profiles = {"r": THINKER}
    return Router(config, PoliciesConfig(), tiers, profiles=profiles)


def decide(difficulty: float, **fields: Any) -> tuple[str | None, str, int | None, str]:
    decision = router_at(difficulty).decide(
        GenRequest(messages=({"role": "user", "content": "What is 17 * 23?"},), **fields)
    )
    plan = decision.thinking
    return (
        decision.band,
        decision.params.name,
        plan.budget if plan else None,
        (plan.source if plan else ""),
    )


@pytest.mark.parametrize(
    ("difficulty", "expected"),
    [
        (0.1, ("easy", "single", 0)),
        (0.5, ("medium", "single", 64)),
        (0.9, ("hard", "convergence", 512)),
    ],
)
def test_each_band_sets_its_thinking_mode(difficulty: float, expected: tuple[Any, ...]) -> None:
    band, policy, budget, source = decide(difficulty)
    assert (band, policy, budget) == expected
    assert source == f"band {band}"


def test_reasoning_effort_moves_the_band_and_scales_its_budget() -> None:
    # 0.55: medium; high effort shifts +0.15 into hard, whose 512 it doubles.
    assert decide(0.55)[:3] == ("medium", "single", 64)
    assert decide(0.55, reasoning_effort="high")[:3] == ("hard", "convergence", 1024)
    # 0.4: medium; low effort shifts -0.15 into easy (thinking off stays off).
    assert decide(0.4, reasoning_effort="low")[:3] == ("easy", "single", 0)
    assert decide(0.9, reasoning_effort="low")[:3] == ("hard", "convergence", 256)


def test_minimal_effort_switches_thinking_off_whatever_the_band() -> None:
    assert decide(0.9, reasoning_effort="minimal")[2:] == (0, "reasoning_effort")


def test_the_requests_own_budget_wins_and_the_profile_caps_the_band() -> None:
    assert decide(0.9, ttc={"thinking_budget": 8})[2:] == (8, "ttc.thinking_budget")
    capped = THINKER.thinking
    assert capped is not None
    huge = (BandConfig(name="all", policy="single", thinking_budget=131072),)
    router = Router(
        RouterConfig(bands=huge, probe={"mode": "never"}),
        PoliciesConfig(),
        ("r",),
        profiles={"r": THINKER},
    )
    plan = router.decide(GenRequest(messages=(), reasoning_effort="high")).thinking
    assert plan is not None and plan.budget == capped.max_budget


def test_an_unknown_effort_is_a_400_even_where_the_band_sets_the_budget() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decide(0.5, reasoning_effort="extreme")
    assert caught.value.param == "reasoning_effort"


def test_a_band_without_a_budget_leaves_the_profile_in_charge() -> None:
    plain = (BandConfig(name="all", policy="single"),)
    router = Router(
        RouterConfig(bands=plain, probe={"mode": "never"}),
        PoliciesConfig(),
        ("r",),
        profiles={"r": THINKER},
    )
    plan = router.decide(GenRequest(messages=(), reasoning_effort="low")).thinking
    assert plan is not None and (plan.budget, plan.source) == (32, "reasoning_effort")


@pytest.mark.parametrize("value", [-1, 200_000, "lots"])
def test_a_bad_band_budget_is_a_config_error_naming_it(value: Any) -> None:
    raw = {
        "tiers": {"r": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
        "router": {"bands": [{"name": "all", "policy": "single", "thinking_budget": value}]},
    }
    with pytest.raises(ConfigError, match="thinking_budget"):
        settings_from_dict(raw)
