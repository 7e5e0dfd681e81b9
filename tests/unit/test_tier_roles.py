"""Policies that need two tiers take them from the config (named, else cost order); on one
tier they run on it and say so; a tier the config lacks is a 400 naming it, never a 404."""

from __future__ import annotations

import math
from typing import Any

import pytest

from core.errors import InvalidRequest
from core.request import GenRequest
from policies.cascade import CascadeParams
from policies.config import PoliciesConfig
from policies.speculative import SpeculativeParams
from policies.tiers import TierLadder
from router.config import RouterConfig
from router.predictor import HeuristicConfig
from router.router import Router
from server.config import ConfigError, settings_from_dict

CONFIG = RouterConfig(predictor=HeuristicConfig(bias=math.log(0.2 / 0.8), weights={}))
DEFAULT_TIER = "smollm2-135m"  # the one tier of config/default.yaml


def pinned(policy: str) -> GenRequest:
    return GenRequest(messages=(), ttc={"policy": policy})


def test_one_tier_plays_both_roles_and_the_reasons_say_so() -> None:
    router = Router(CONFIG, PoliciesConfig(), {DEFAULT_TIER: 0.0})
    speculative = router.decide(pinned("speculative"))
    assert isinstance(speculative.params, SpeculativeParams)
    assert speculative.params.draft_tier == speculative.params.judge_tier == DEFAULT_TIER
    assert f"speculative: one tier ({DEFAULT_TIER}) plays every role" in speculative.reasons[-1]
    cascade = router.decide(pinned("cascade"))
    assert isinstance(cascade.params, CascadeParams)
    assert (cascade.params.small_tier, cascade.params.large_tier) == (DEFAULT_TIER,) * 2
    assert "one tier" in cascade.reasons[-1]


def test_two_tiers_by_cost_whatever_their_names_and_order() -> None:
    router = Router(CONFIG, PoliciesConfig(), {"big": 1.5, "cheap": 0.1})
    speculative = router.decide(pinned("speculative")).params
    assert isinstance(speculative, SpeculativeParams)
    assert (speculative.draft_tier, speculative.judge_tier) == ("cheap", "big")
    cascade = router.decide(pinned("cascade")).params
    assert isinstance(cascade, CascadeParams)
    assert (cascade.small_tier, cascade.large_tier) == ("cheap", "big")


def test_equal_costs_keep_config_order_and_named_tiers_win() -> None:
    assert TierLadder.by_cost({"a": 0.0, "b": 0.0, "c": 0.0}).tiers == ("a", "b", "c")
    named = PoliciesConfig.model_validate({"speculative": {"judge_tier": "mid"}})
    router = Router(CONFIG, named, {"cheap": 0.1, "mid": 0.5, "big": 1.0})
    params = router.decide(pinned("speculative")).params
    assert isinstance(params, SpeculativeParams)
    assert (params.draft_tier, params.judge_tier) == ("cheap", "mid")


def test_a_tier_the_config_lacks_is_a_400_naming_it() -> None:
    named = PoliciesConfig.model_validate({"cascade": {"large_tier": "large"}})
    router = Router(CONFIG, named, {DEFAULT_TIER: 0.0})
    with pytest.raises(InvalidRequest, match="large_tier: unknown tier 'large'") as info:
        router.decide(pinned("cascade"))
    assert (info.value.status, info.value.code) == (400, "missing_tier")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"policies": {"speculative": {"draft_tier": "small"}}}, "policies.speculative.draft_tier"),
        (
            {
                "router": {
                    "bands": [
                        {"name": "all", "policy": "cascade", "params": {"small_tier": "small"}}
                    ]
                }
            },
            "router.bands.all.params.small_tier",
        ),
    ],
)
def test_config_naming_an_unknown_tier_fails_at_start_up(
    section: dict[str, Any], message: str
) -> None:
    tiers = {DEFAULT_TIER: {"model": DEFAULT_TIER, "endpoints": ["http://127.0.0.1:1"]}}
    with pytest.raises(ConfigError, match=message):
        settings_from_dict({"tiers": tiers, **section})
