"""The probe: first-token entropy from the small tier, only when the predictor is unsure."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.backend import Choice, Completion
from core.errors import InvalidRequest, ModelNotFound, UpstreamUnavailable
from core.request import GenRequest
from core.usage import TokenUsage
from policies import registry
from policies.config import PoliciesConfig
from policies.single import SingleParams
from router.config import LoadConfig, ProbeConfig, RouterConfig
from router.probe import first_token_entropy
from router.router import Router
from tests.fakes import ScriptedBackend
from tests.unit.test_router import FixedLoad, constant

SURE = [math.log(0.97), math.log(0.01), math.log(0.01), math.log(0.005), math.log(0.005)]
UNSURE = [math.log(0.2)] * 5


@dataclass
class LogprobBackend(ScriptedBackend):
    """Answers a probe (max_tokens 1 + top_logprobs) with ``first``; other calls as scripted."""

    first: list[float] = field(default_factory=lambda: SURE)
    fail: bool = False

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        if "top_logprobs" not in body:
            return await super().chat(tier, body, affinity=affinity)
        self.calls.append((tier, body))
        if self.fail:
            raise UpstreamUnavailable("no worker")
        top = [{"token": f"t{i}", "logprob": lp} for i, lp in enumerate(self.first)]
        raw = {
            "logprobs": {
                "content": [{"token": "t0", "logprob": top[0]["logprob"], "top_logprobs": top}]
            }
        }
        choice = Choice(index=0, text="t0", finish_reason="length", raw=raw)
        return Completion(choices=(choice,), usage=TokenUsage(12, 1), model="fake")


def backend(first: list[float] = SURE, **kw: Any) -> LogprobBackend:
    return LogprobBackend(respond=lambda tier, body: ["Paris"], first=first, **kw)


def router(predicted: float, load: FixedLoad | None = None, **probe: Any) -> Router:
    config = RouterConfig(predictor=constant(predicted), probe=ProbeConfig(**probe))
    return Router(config, PoliciesConfig(), ("small", "large"), load=load, rng=random.Random(0))


def request(**kw: Any) -> GenRequest:
    return GenRequest(messages=({"role": "user", "content": "What is 6 x 7?"},), **kw)


def test_entropy_is_zero_when_sure_and_high_when_spread() -> None:
    assert first_token_entropy([0.0]) == (0.0, 0.0)
    _, spread = first_token_entropy(UNSURE)
    _, sure = first_token_entropy(SURE)
    assert sure < 0.2 < 0.8 < spread <= 1.0


async def test_an_unsure_prediction_is_refined_by_one_probe_token() -> None:
    fake = backend(SURE)
    routing = await router(0.5).route(request(sampling={"max_tokens": 64, "n": 2}), fake)
    ((tier, body),) = fake.calls
    assert tier == "small"
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"]) == (1, True, 5)
    assert "n" not in body and body["messages"][0]["content"] == "What is 6 x 7?"
    decision = routing.decision
    assert decision.band == "easy"  # 0.5 * 0.5 + 0.5 * (low entropy) < 0.35
    assert routing.scores["probe"] < 0.2 and routing.probe_usage == TokenUsage(12, 1)
    assert any(r.startswith("probe: first-token entropy") for r in decision.reasons)
    hard = await router(0.5).route(request(), backend(UNSURE))
    assert hard.decision.band == "hard"


async def test_a_confident_prediction_skips_the_probe() -> None:
    fake = backend()
    routing = await router(0.1).route(request(), fake)
    assert fake.calls == [] and routing.probe_usage is None and "probe" not in routing.scores


@pytest.mark.parametrize(
    ("probe", "req"),
    [
        ({"mode": "never"}, request()),
        ({"rate": 0.0}, request()),
        ({}, request(passthrough={"tools": [{"type": "function"}]})),
    ],
)
async def test_probe_off_by_config_rate_or_for_tool_calls(
    probe: dict[str, Any], req: GenRequest
) -> None:
    fake = backend()
    await router(0.5, **probe).route(req, fake)
    assert fake.calls == []


async def test_mode_always_probes_confident_requests_too() -> None:
    fake = backend()
    await router(0.05, mode="always").route(request(), fake)
    assert len(fake.calls) == 1


async def test_a_failed_probe_leaves_the_predictor_in_charge() -> None:
    r = router(0.5)
    routing = await r.route(request(), backend(fail=True))
    assert routing.decision.difficulty == pytest.approx(0.5)
    assert any("probe failed" in reason for reason in routing.decision.reasons)
    assert r.counters.probes["failed"] == 1


async def test_no_probe_while_the_probe_tier_is_saturated() -> None:
    fake = backend()
    r = router(0.5, load=FixedLoad(small=0.95))
    routing = await r.route(request(), fake)
    assert fake.calls == [] and r.counters.probes["skipped_load"] == 1
    assert any("probe skipped" in reason for reason in routing.decision.reasons)
    config = RouterConfig(predictor=constant(0.5), load=LoadConfig(probe_rate_scale=1.0))
    keen = Router(config, PoliciesConfig(), ("small",), load=FixedLoad(small=0.95))
    await keen.route(request(), fake)
    assert len(fake.calls) == 1


async def test_probe_tokens_are_billed_to_the_request_usage() -> None:
    fake = backend()
    r = router(0.5)
    req = request()
    routing = await r.route(req, fake)
    result = await registry.build(SingleParams()).run(req, routing.decision, fake)
    routing.bill_probe(result)
    kinds = {(kind, tier): u for kind, tier, u in result.usage.items()}
    assert kinds[("probe", "small")] == TokenUsage(12, 1)
    assert kinds[("sample", "small")].completion_tokens == 1
    assert result.usage.total.completion_tokens == 2
    assert (r.counters.probe_prompt_tokens, r.counters.probe_completion_tokens) == (12, 1)


async def test_a_bad_request_fails_before_any_probe_token_is_spent() -> None:
    fake = backend()
    with pytest.raises(ModelNotFound):
        await router(0.5).route(request(model="gpt-4"), fake)
    with pytest.raises(InvalidRequest):
        await router(0.5).route(request(ttc={"policy": "adaptive_bon", "max_samples": 99}), fake)
    assert fake.calls == []
