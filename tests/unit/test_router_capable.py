"""Policies degrade by capability, never by surprise: a policy that needs what its tier's engine
lacks is a 400 naming the tier and the capability when pinned, and the plain policy (said in
``ttc.reasons``) when routed."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequest
from core.request import GenRequest
from policies.config import PoliciesConfig
from router.config import BandConfig, RouterConfig
from router.router import Router
from tests.unit.test_router import constant
from workers.config import TierConfig
from workers.engines import capabilities

QUESTION = ({"role": "user", "content": "What is the capital of Japan?"},)


def router(engine: str) -> Router:
    tiers = {"hosted": TierConfig(model="m", endpoints=("http://h/v1",), engine=engine)}
    config = RouterConfig(
        predictor=constant(0.9), bands=(BandConfig(name="all", policy="convergence"),)
    )
    return Router(config, PoliciesConfig(), ("hosted",), capabilities=capabilities(tiers))


def test_a_routed_policy_the_engine_cannot_serve_falls_back_to_plain_and_says_why() -> None:
    decision = router("openai").decide(GenRequest(messages=QUESTION))
    assert decision.params.name == "single"
    assert "tier hosted cannot continue_final_message: convergence -> single" in decision.reasons
    assert router("vllm").decide(GenRequest(messages=QUESTION)).params.name == "convergence"


def test_a_pinned_policy_the_engine_cannot_serve_is_a_400_naming_tier_and_capability() -> None:
    pinned = GenRequest(messages=QUESTION, ttc={"policy": "convergence"})
    with pytest.raises(InvalidRequest) as info:
        router("openai").decide(pinned)
    assert info.value.code == "unsupported_by_tier" and info.value.param == "ttc.policy"
    assert "'hosted'" in info.value.message and "continue_final_message" in info.value.message
