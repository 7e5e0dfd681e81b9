from __future__ import annotations

from typing import Any

import pytest

from policies.base import GenRequest
from policies.errors import InvalidRequest, ModelNotFound
from policies.params import AdaptiveBonParams, PoliciesConfig
from router.config import RouterConfig
from router.router import Router

ROUTER = Router(RouterConfig(), PoliciesConfig(), ("small", "large"))


def req(model: str = "auto", **ttc: Any) -> GenRequest:
    return GenRequest(messages=({"role": "user", "content": "hi"},), model=model, ttc=ttc)


def test_auto_goes_to_the_default_tier_and_model_pins_a_tier() -> None:
    assert ROUTER.decide(req()).tier == "small"
    assert ROUTER.decide(req("large")).tier == "large"
    with pytest.raises(ModelNotFound):
        ROUTER.decide(req("gpt-4"))


def test_policy_pin_with_overrides() -> None:
    plan = ROUTER.decide(req(policy="adaptive_bon", max_samples=8, confidence=0.9))
    assert isinstance(plan.policy, AdaptiveBonParams)
    assert (plan.policy.max_samples, plan.policy.confidence) == (8, 0.9)


@pytest.mark.parametrize(
    ("ttc", "param"),
    [
        ({"policy": "nope"}, "ttc.policy"),
        ({"policy": "adaptive_bon", "max_samples": 17}, "ttc.max_samples"),
        ({"policy": "adaptive_bon", "confidence": 1.5}, "ttc.confidence"),
        ({"policy": "adaptive_bon", "min_samples": -1}, "ttc.min_samples"),
        ({"policy": "adaptive_bon", "bogus": 1}, "ttc.bogus"),
        ({"policy": "speculative", "draft_tier": "large"}, "ttc.draft_tier"),
    ],
)
def test_bad_overrides_name_the_field(ttc: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        ROUTER.decide(req(**ttc))
    assert info.value.param == param
