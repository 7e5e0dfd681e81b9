"""The compute contract: validated, resolved against the key, enforced while a request runs.

The backend here is scripted, because the conditions are exact: a worker that generates
``ahead`` tokens beyond what the gateway has read when a stream is cut, a round that takes a
known time. The bound asserted on every cut: the spend passes ``max_total_tokens`` by at most
the tokens the cut stream had generated when the stop was sent and not yet been counted (the
delta that crossed the line plus the worker's lead); non-streamed calls never pass it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from core.backend import Completion, Delta
from core.contract import ComputeContract, ContractMeter, prompt_estimate
from core.errors import BudgetReached, ContractReached, DeadlineReached, InvalidRequest
from core.metering import MeteredBackend
from core.request import Decision, GenRequest
from core.usage import TokenUsage
from policies.adaptive_bon import AdaptiveBonParams, AdaptiveBonPolicy
from router.contract import (
    ANSWER_TOKENS,
    affordable_samples,
    contract_tokens,
    probe_affordable,
    samples_within,
)
from server.app import create_app
from server.config import settings_from_dict
from server.contract import requested, resolved
from server.endpoint import request_options
from state.config import ContractTerms
from tests.fakes import ScriptedBackend, choice
from tests.unit.test_lifecycle import QUESTION, client_for

PROMPT_TOKENS = 20


@dataclass
class TokenBackend:
    """Each sample is ``answer`` cut to the body's ``max_tokens`` words (one word a token),
    as vLLM honours ``max_tokens``; streams generate ``ahead`` tokens before the reader sees
    one, like a worker that runs ahead of a slow connection."""

    answers: list[str] = field(default_factory=lambda: ["The answer is 1.", "The answer is 2."])
    ahead: int = 0
    generated: int = 0  # tokens the stream had generated when it was closed
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def _text(self, i: int, limit: int | None) -> str:
        words = self.answers[i % len(self.answers)].split(" ")
        return " ".join(words[:limit] if limit is not None else words)

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.bodies.append(body)
        texts = [self._text(i, body.get("max_tokens")) for i in range(int(body.get("n") or 1))]
        used = sum(len(t.split(" ")) for t in texts)
        choices = tuple(choice(i, t) for i, t in enumerate(texts))
        return Completion(choices, TokenUsage(PROMPT_TOKENS, used), "fake")

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        limit = body.get("max_tokens") or 10_000
        self.generated = min(self.ahead, limit)
        for _ in range(limit):
            self.generated = min(self.generated + 1, limit)
            yield Delta(text="w ")
        yield Delta(usage=TokenUsage(PROMPT_TOKENS, limit), finish_reason="length")


def split_vote(tier: str, body: dict[str, Any]) -> list[str]:
    """Samples that split evenly between two answers: no stopping rule ever fires."""
    return [f"The answer is {i % 2}." for i in range(int(body.get("n") or 1))]


def metered(backend: Any, **terms: Any) -> MeteredBackend:
    return MeteredBackend(backend, ContractMeter(ComputeContract(**terms)))


def vote_policy() -> AdaptiveBonPolicy:
    return AdaptiveBonPolicy(AdaptiveBonParams(single_sample_confidence=None, max_samples=64))


def decision() -> Decision:
    return Decision("small", AdaptiveBonParams())


# validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_total_tokens", -5),
        ("max_total_tokens", 0),
        ("max_total_tokens", 10**12),
        ("max_total_tokens", "100"),
        ("max_total_tokens", True),
        ("max_total_tokens", 1.5),
        ("max_cost", 0),
        ("max_cost", -0.1),
        ("max_cost", 1e12),
        ("max_cost", "1"),
        ("deadline_ms", 0),
        ("deadline_ms", 10**9),
        ("deadline_ms", [100]),
    ],
)
def test_a_bad_contract_field_is_a_400_naming_it(name: str, value: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        request_options({name: value})
    assert info.value.param == f"ttc.{name}"


def test_good_fields_stay_in_ttc_for_the_lifecycle() -> None:
    options = request_options({"max_total_tokens": 500, "max_cost": 2, "deadline_ms": 900})
    assert requested(options.ttc) == ComputeContract(500, 2.0, 900)


def test_key_defaults_fill_in_and_ceilings_refuse_or_clamp() -> None:
    terms = ContractTerms(max_total_tokens=300, ceiling_total_tokens=1000, ceiling_deadline_ms=5000)
    assert resolved(ComputeContract(), terms) == ComputeContract(300, None, 5000)
    assert resolved(ComputeContract(800), terms).max_total_tokens == 800
    with pytest.raises(InvalidRequest) as info:
        resolved(ComputeContract(1001), terms)
    assert (info.value.param, info.value.code) == ("ttc.max_total_tokens", "above_ceiling")
    clamp = terms.model_copy(update={"over_ceiling": "clamp"})
    assert resolved(ComputeContract(5000, None, 9000), clamp) == ComputeContract(1000, None, 5000)
    with pytest.raises(ValueError, match="above ceiling_total_tokens"):
        ContractTerms(max_total_tokens=2000, ceiling_total_tokens=1000)


# enforcement ------------------------------------------------------------------------------
def test_max_tokens_is_clamped_to_what_is_left_and_divided_among_samples() -> None:
    meter = ContractMeter(ComputeContract(max_total_tokens=300))
    body = {"messages": QUESTION, "n": 4}
    prompt = meter.known_prompt(body)
    first, clamped = meter.open("small", body, reserve=True)
    assert clamped["max_tokens"] == (300 - prompt) // 4 and clamped["n"] == 4
    meter.close(first, body, TokenUsage(20, 240))  # the worker reports: prompt 20, 4 x 60
    second_body = {"messages": QUESTION, "n": 4}
    second, clamped = meter.open("small", second_body, reserve=True)
    assert (clamped["n"], clamped["max_tokens"]) == (1, 20)  # 20 left: one useful sample
    meter.close(second, second_body, TokenUsage(20, 20))
    with pytest.raises(BudgetReached):
        meter.open("small", {"messages": QUESTION}, reserve=True)


async def test_adaptive_bon_stops_at_the_budget_and_votes_on_what_it_drew() -> None:
    backend = TokenBackend()
    meter = metered(backend, max_total_tokens=150)
    req = GenRequest(tuple(QUESTION))
    result = await vote_policy().run(req, decision(), meter)
    assert meter.contract is not None
    assert result.report["stop_reason"] == "budget" and result.report["early_stopped"]
    assert result.message.startswith("The answer is")
    assert meter.spent.total_tokens <= 150  # chat calls never overshoot: clamped and reserved
    assert meter.contract.used_tokens == meter.spent.total_tokens == result.usage.total.total_tokens


async def test_a_contract_smaller_than_the_prompt_is_a_clear_error() -> None:
    backend = TokenBackend()
    with pytest.raises(BudgetReached, match="too small"):
        await vote_policy().run(
            GenRequest(tuple(QUESTION)), decision(), metered(backend, max_total_tokens=30)
        )
    assert backend.bodies == []  # nothing was sent upstream


@pytest.mark.parametrize("ahead", [0, 3, 12])
async def test_a_cut_stream_overshoots_by_at_most_what_it_had_generated_uncounted(
    ahead: int,
) -> None:
    backend = TokenBackend(answers=[" ".join(["w"] * 500)], ahead=ahead)
    meter = metered(backend, max_total_tokens=200)
    learn = await meter.chat("small", {"messages": QUESTION, "max_tokens": 5})  # prompt known
    stream = meter.stream_chat("small", {"messages": QUESTION})
    read = [await anext(stream) for _ in range(10)]
    probe = await meter.chat("small", {"messages": QUESTION})  # reserves all that is left
    with pytest.raises(BudgetReached):
        async for delta in stream:
            read.append(delta)
    real = learn.usage.total_tokens + PROMPT_TOKENS + backend.generated + probe.usage.total_tokens
    uncounted = backend.generated - len(read)  # the worker's lead when the stop was sent
    assert 0 <= real - 200 <= uncounted + 1  # + 1: the delta that crossed the line
    assert len(read) == 10  # the stream was cut at the first delta past the contract


async def test_the_deadline_stops_the_rounds_within_the_margin() -> None:
    backend = ScriptedBackend(split_vote, delay_s=0.1)
    meter = metered(backend, deadline_ms=250)
    started = time.monotonic()
    result = await vote_policy().run(GenRequest(tuple(QUESTION)), decision(), meter)
    elapsed = time.monotonic() - started
    assert result.report["stop_reason"] == "deadline" and result.report["samples"] >= 2
    assert 0.25 <= elapsed < 0.25 + 0.1  # the round in flight was cancelled at the deadline


async def test_a_deadline_before_any_answer_is_a_504() -> None:
    backend = ScriptedBackend(lambda t, b: ["x"], delay_s=1.0)
    with pytest.raises(DeadlineReached) as info:
        await vote_policy().run(
            GenRequest(tuple(QUESTION)), decision(), metered(backend, deadline_ms=50)
        )
    assert info.value.status == 504 and info.value.param == "ttc.deadline_ms"
    assert isinstance(info.value, ContractReached)


# through the gateway ------------------------------------------------------------------------
def app_with(backend: Any, **contract: Any) -> Any:
    return create_app(
        settings_from_dict(
            {
                "tiers": {
                    "small": {
                        "model": "m",
                        "endpoints": ["http://127.0.0.1:9"],
                        "cost_per_1k_tokens": 2.0,
                    }
                },
                "server": {"request_timeout_s": 2.0, "stream_keepalive_s": 0.05},
                "limits": {"contract": contract},
            }
        ),
        backend=backend,
    )


async def test_the_response_reports_the_contract_and_the_router_planned_within_it() -> None:
    client = client_for(app_with(TokenBackend(answers=[" ".join(["w"] * 500)])))
    reply = await client.chat.completions.create(
        model="auto",
        messages=QUESTION,
        extra_body={
            "ttc": {
                "policy": "adaptive_bon",
                "single_sample_confidence": None,
                "max_total_tokens": 1000,
                "max_cost": 4.0,
            }
        },
    )
    ttc = reply.model_extra["ttc"]  # type: ignore[index]
    contract = ttc["contract"]
    assert contract["max_total_tokens"] == 1000 and contract["used_tokens"] <= 1000
    assert reply.usage is not None and reply.usage.total_tokens == contract["used_tokens"]
    affordable = 1000 // (prompt_estimate({"messages": QUESTION}) + ANSWER_TOKENS)
    assert f"at most {affordable} samples" in " ".join(ttc["reasons"])
    assert ttc["samples"] <= affordable


def test_cost_is_priced_per_tier_and_bounds_the_tokens_left() -> None:
    meter = ContractMeter(ComputeContract(max_cost=1.0), {"small": 2.0, "large": 10.0})
    assert (meter.tokens_left("small"), meter.tokens_left("large")) == (500, 100)
    body = {"messages": QUESTION}
    handle, clamped = meter.open("large", body, reserve=True)
    assert clamped["max_tokens"] == 100 - meter.known_prompt(body)
    meter.close(handle, body, TokenUsage(20, 30))
    assert meter.used_cost == pytest.approx(50 * 10.0 / 1000)
    assert meter.tokens_left("small") == 250  # 0.5 left at 2.0 per 1k


def test_the_router_plans_fewer_samples_and_no_probe_within_a_small_contract() -> None:
    req = GenRequest(tuple(QUESTION), contract=ComputeContract(max_cost=1.0))
    tokens = contract_tokens(req, {"small": 2.0}, "small")
    assert tokens == 500
    reasons: list[str] = []
    params = samples_within(AdaptiveBonParams(), req, tokens, reasons)
    assert params.max_samples == affordable_samples(req, 500) < AdaptiveBonParams().max_samples
    assert params.min_samples <= params.max_samples and reasons
    assert not probe_affordable(req, tokens) and probe_affordable(req, None)
    assert probe_affordable(req, 100_000)


async def test_through_the_gateway_too_small_is_a_400_and_above_the_ceiling_too() -> None:
    client = client_for(app_with(TokenBackend(), ceiling_total_tokens=1000))
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="auto", messages=QUESTION, extra_body={"ttc": {"max_total_tokens": 30}}
        )
    assert info.value.code == "contract_too_small" and "too small" in info.value.message
    with pytest.raises(openai.BadRequestError) as above:
        await client.chat.completions.create(
            model="auto", messages=QUESTION, extra_body={"ttc": {"max_total_tokens": 5000}}
        )
    assert above.value.param == "ttc.max_total_tokens"


async def test_deadline_ms_tightens_the_request_deadline() -> None:
    backend = ScriptedBackend(split_vote, delay_s=0.1)
    client = client_for(app_with(backend))
    started = time.monotonic()
    reply = await client.chat.completions.create(
        model="auto",
        messages=QUESTION,
        extra_body={
            "ttc": {
                "policy": "adaptive_bon",
                "single_sample_confidence": None,
                "max_samples": 16,
                "deadline_ms": 300,
            }
        },
    )
    assert time.monotonic() - started < 0.3 + 0.2
    assert reply.model_extra["ttc"]["stop_reason"] == "deadline"  # type: ignore[index]
    await asyncio.sleep(0)
