"""Router decisions: bands, tiers, pins, reasoning_effort, load shedding, config validation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import InvalidRequest, ModelNotFound
from core.request import GenRequest
from policies.adaptive_bon import AdaptiveBonParams
from policies.config import PoliciesConfig
from policies.params import PolicyCaps
from policies.single import SingleParams
from router.config import DEFAULT_BANDS, BandConfig, LoadConfig, RouterConfig
from router.predictor import HeuristicConfig
from router.router import Router
from server.config import ConfigError, settings_from_dict

ROUTER = Router(RouterConfig(), PoliciesConfig(), ("small", "large"))


def req(model: str = "auto", **ttc: Any) -> GenRequest:
    """A closed question: every band's policy serves its answer shape."""
    question = {"role": "user", "content": "What is the capital of Japan?"}
    return GenRequest(messages=(question,), model=model, ttc=ttc)


def constant(difficulty: float) -> HeuristicConfig:
    """A predictor that always says ``difficulty`` (no weights, bias = logit)."""
    return HeuristicConfig(bias=math.log(difficulty / (1 - difficulty)), weights={})


def router_at(
    difficulty: float,
    tiers: tuple[str, ...] = ("small", "large"),
    policies: PoliciesConfig | None = None,
    **config: Any,
) -> Router:
    config.setdefault("bands", MECHANICS_BANDS)
    settings = RouterConfig(predictor=constant(difficulty), **config)
    return Router(settings, policies or PoliciesConfig(), tiers)


# Fixed bands for the tests of band mechanics (effort, caps, pins), apart from the shipped ones.
MECHANICS_BANDS = (
    BandConfig(name="easy", upto=0.35, policy="single"),
    BandConfig(
        name="medium", upto=0.65, policy="adaptive_bon", params={"min_samples": 2, "max_samples": 4}
    ),
    BandConfig(name="hard", policy="adaptive_bon", params={"min_samples": 2, "max_samples": 8}),
)


class FixedLoad:
    def __init__(self, **levels: float | None) -> None:
        self.levels = levels

    def saturation(self, tier: str) -> float | None:
        return self.levels.get(tier)


def test_auto_goes_to_the_default_tier_and_model_pins_a_tier() -> None:
    assert ROUTER.decide(req()).tier == "small"
    assert ROUTER.decide(req("large")).tier == "large"
    with pytest.raises(ModelNotFound):
        ROUTER.decide(req("gpt-4"))


def test_policy_pin_with_overrides() -> None:
    decision = ROUTER.decide(req(policy="adaptive_bon", max_samples=8, confidence=0.9))
    assert isinstance(decision.params, AdaptiveBonParams)
    assert (decision.params.max_samples, decision.params.confidence) == (8, 0.9)


@pytest.mark.parametrize(
    ("ttc", "param"),
    [
        ({"policy": "nope"}, "ttc.policy"),
        ({"policy": "adaptive_bon", "max_samples": 17}, "ttc.max_samples"),
        ({"policy": "adaptive_bon", "confidence": 1.5}, "ttc.confidence"),
        ({"policy": "adaptive_bon", "min_samples": -1}, "ttc.min_samples"),
        ({"policy": "adaptive_bon", "bogus": 1}, "ttc.bogus"),
        ({"policy": "adaptive_bon", "max_samples": "8"}, "ttc.max_samples"),  # JSON types, as
        ({"policy": "adaptive_bon", "max_samples": 8.0}, "ttc.max_samples"),  # the OpenAI
        ({"policy": "adaptive_bon", "max_samples": True}, "ttc.max_samples"),  # fields have
        ({"policy": "adaptive_bon", "weighted": "yes"}, "ttc.weighted"),
        ({"policy": "speculative", "draft_tier": "large"}, "ttc.draft_tier"),
    ],
)
def test_bad_overrides_name_the_field(ttc: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        ROUTER.decide(req(**ttc))
    assert info.value.param == param


@pytest.mark.parametrize(
    ("difficulty", "band", "policy", "max_samples"),
    [
        (0.1, "easy", "adaptive_bon", 6),
        (0.5, "medium", "adaptive_bon", 12),
        (0.9, "hard", "adaptive_bon", 16),
    ],
)
def test_default_bands_spend_more_on_harder_requests(
    difficulty: float, band: str, policy: str, max_samples: int | None
) -> None:
    decision = router_at(difficulty, bands=DEFAULT_BANDS).decide(req())
    assert (decision.band, decision.params.name) == (band, policy)
    assert getattr(decision.params, "max_samples", None) == max_samples
    assert decision.difficulty == pytest.approx(difficulty)
    assert any(f"band {band}" in reason for reason in decision.reasons)


def test_with_one_tier_every_band_maps_to_it() -> None:
    for difficulty in (0.05, 0.5, 0.95):
        assert router_at(difficulty, tiers=("only",)).decide(req()).tier == "only"


def test_a_band_can_name_a_tier_and_model_still_pins_it() -> None:
    bands = (BandConfig(name="easy", upto=0.5), BandConfig(name="hard", tier="large"))
    assert router_at(0.2, bands=bands).decide(req()).tier == "small"
    assert router_at(0.8, bands=bands).decide(req()).tier == "large"
    pinned = router_at(0.8, bands=bands).decide(req("small"))
    assert (pinned.tier, pinned.band) == ("small", "hard")


def test_reasoning_effort_shifts_bands_and_scales_budgets() -> None:
    high = router_at(0.3).decide(GenRequest(messages=(), reasoning_effort="high"))
    assert high.band == "medium"  # 0.3 + 0.15 crosses 0.35
    assert isinstance(high.params, AdaptiveBonParams) and high.params.max_samples == 8
    low = router_at(0.7).decide(GenRequest(messages=(), reasoning_effort="low"))
    assert low.band == "medium"  # 0.7 - 0.15 falls below 0.65
    assert isinstance(low.params, AdaptiveBonParams)
    assert (low.params.min_samples, low.params.max_samples) == (2, 2)
    assert any("reasoning_effort low" in r for r in low.reasons)


def test_effort_never_grows_a_budget_past_the_cap() -> None:
    policies = PoliciesConfig(caps=PolicyCaps(max_samples=10))
    decision = router_at(0.9, policies=policies).decide(
        GenRequest(messages=(), reasoning_effort="high")
    )
    assert isinstance(decision.params, AdaptiveBonParams) and decision.params.max_samples == 10


def test_policy_pin_keeps_the_band_and_its_params_when_they_match() -> None:
    single = router_at(0.9).decide(req(policy="single"))
    assert (single.band, single.params) == ("hard", SingleParams())
    same = router_at(0.9).decide(req(policy="adaptive_bon", confidence=0.9))
    assert isinstance(same.params, AdaptiveBonParams)
    assert (same.params.max_samples, same.params.confidence) == (8, 0.9)


def test_greedy_requests_do_not_vote_unless_asked() -> None:
    greedy = GenRequest(messages=(), sampling={"temperature": 0})
    assert router_at(0.9).decide(greedy).params.name == "single"
    pinned = GenRequest(messages=(), sampling={"temperature": 0}, ttc={"policy": "adaptive_bon"})
    assert router_at(0.9).decide(pinned).params.name == "adaptive_bon"


def test_controller_offset_moves_the_thresholds() -> None:
    router = router_at(0.5)
    router.controller.offset = 0.2
    decision = router.decide(req())
    assert decision.band == "easy" and decision.difficulty == pytest.approx(0.5)
    assert any("budget controller" in r for r in decision.reasons)


def test_saturated_tier_gets_smaller_budgets_and_no_speculation_when_easy() -> None:
    bands = (
        BandConfig(name="easy", upto=0.4, policy="speculative"),
        BandConfig(name="hard", policy="adaptive_bon", params={"max_samples": 8}),
    )
    config = RouterConfig(predictor=constant(0.9), bands=bands, load=LoadConfig(saturated_at=0.8))
    busy = Router(config, PoliciesConfig(), ("small", "large"), load=FixedLoad(small=0.9))
    hard = busy.decide(req())
    assert isinstance(hard.params, AdaptiveBonParams) and hard.params.max_samples == 4
    assert any(r.startswith("load: tier small saturation 0.90") for r in hard.reasons)
    easy_config = config.model_copy(update={"predictor": constant(0.1)})
    easy = Router(easy_config, PoliciesConfig(), ("small", "large"), load=FixedLoad(small=0.9))
    assert easy.decide(req()).params.name == "single"
    idle = Router(easy_config, PoliciesConfig(), ("small", "large"), load=FixedLoad(small=0.2))
    assert idle.decide(req()).params.name == "speculative"
    unknown = Router(easy_config, PoliciesConfig(), ("small", "large"), load=FixedLoad())
    assert unknown.decide(req()).params.name == "speculative"
    assert busy.counters.load_shed == 1 and unknown.counters.load_shed == 0


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        ([{"name": "a", "upto": 0.6}, {"name": "b", "upto": 0.3}, {"name": "c"}], "increase"),
        ([{"name": "a", "upto": 0.5}, {"name": "b", "upto": 0.9}], "last band"),
        ([{"name": "a", "upto": 0.5}, {"name": "a"}], "unique"),
        ([{"name": "a", "policy": "magic"}], "unknown policy"),
        ([{"name": "a", "policy": "adaptive_bon", "params": {"max_samples": 0}}], "max_samples"),
    ],
)
def test_bad_bands_are_refused(bands: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RouterConfig.model_validate({"bands": bands})


def test_unknown_tiers_in_router_config_fail_settings() -> None:
    tiers = {"small": {"model": "m", "endpoints": ["http://127.0.0.1:1"]}}
    router = {"bands": [{"name": "all", "tier": "huge"}]}
    with pytest.raises(ConfigError, match="router.bands.all.tier: unknown tier 'huge'"):
        settings_from_dict({"tiers": tiers, "router": router})
    with pytest.raises(ValueError, match="unknown tier 'huge'"):
        Router(RouterConfig.model_validate(router), PoliciesConfig(), ("small",))


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"n": 2}])
def test_an_override_for_the_bands_policy_survives_the_routers_switch(
    sampling: dict[str, Any],
) -> None:
    """``auto`` with ``ttc.max_samples`` was valid as sent: when the router switches to
    ``single`` (greedy, or n > 1), the override is set aside and said, not a 400."""
    request = GenRequest(
        messages=({"role": "user", "content": "hi"},), ttc={"max_samples": 8}, sampling=sampling
    )
    decision = ROUTER.decide(request)
    assert decision.params.name == "single"
    assert any("ttc.max_samples" in r and "unused" in r for r in decision.reasons)


@pytest.mark.parametrize("policy", ["convergence", "speculative", "cascade"])
def test_n_above_1_with_a_one_answer_policy_is_a_400_naming_n(policy: str) -> None:
    request = GenRequest(
        messages=({"role": "user", "content": "hi"},), ttc={"policy": policy}, sampling={"n": 3}
    )
    with pytest.raises(InvalidRequest) as info:
        ROUTER.decide(request)
    assert info.value.param == "n" and policy in info.value.message


def test_logprobs_are_never_dropped_silently_by_speculative() -> None:
    asked = {"logprobs": True, "top_logprobs": 2}
    pinned = GenRequest(
        messages=({"role": "user", "content": "hi"},), ttc={"policy": "speculative"}, sampling=asked
    )
    with pytest.raises(InvalidRequest) as info:
        ROUTER.decide(pinned)
    assert info.value.param == "logprobs"
    speculating = router_at(0.5, bands=(BandConfig(name="all", policy="speculative"),))
    routed = GenRequest(messages=({"role": "user", "content": "hi"},), sampling=asked)
    decision = speculating.decide(routed)
    assert decision.params.name == "single"
    assert any("logprobs" in r for r in decision.reasons)
