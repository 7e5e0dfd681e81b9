"""Unit tests of the cascade policy: stage policies faked, then the real adaptive_bon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import pytest

from core.backend import Backend, Delta
from core.progress import Progress
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from core.usage import TokenUsage, UsageLedger
from policies.adaptive_bon import AdaptiveBonParams
from policies.base import Policy, PolicyEvent, stream_whole
from policies.cascade import CascadeParams, CascadePolicy
from policies.params import PolicyParams
from policies.single import SingleParams
from tests.fakes import ScriptedBackend

REQ = GenRequest(messages=({"role": "user", "content": "Capital of France?"},), request_id="r1")
# The faked stages never call the backend; a call would fail the test.
UNUSED = ScriptedBackend(lambda tier, body: pytest.fail(f"unexpected call on {tier}"))


@dataclass
class StagePolicy:
    """A stage that answers ``text`` with ``report``, recording the decision it was given."""

    text: str
    report: Mapping[str, Any]
    tokens: int = 10
    plans: list[Decision] = field(default_factory=list)
    name: ClassVar[str] = "stage"

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult:
        self.plans.append(decision)
        ledger = UsageLedger()
        ledger.add("sample", decision.tier, TokenUsage(5, self.tokens))
        choice = ResultChoice(index=0, text=self.text, finish_reason="stop")
        return PolicyResult(choices=(choice,), usage=ledger, report=self.report)

    def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncIterator[PolicyEvent]:
        return stream_whole(self, req, decision, backend)


@dataclass
class Stages:
    """A policy factory handing out the small stage, then the large one."""

    small: StagePolicy
    large: StagePolicy
    built: list[PolicyParams] = field(default_factory=list)

    def __call__(self, spec: PolicyParams) -> Policy:
        self.built.append(spec)
        return self.small if len(self.built) == 1 else self.large


TIERS = {"small_tier": "small", "large_tier": "large"}


def stages(confidence: float | None, answer: str | None = "paris") -> Stages:
    small_report = {
        "samples": 4,
        "confidence": confidence,
        "answer": answer,
        "stop_reason": "max_samples",
        "early_stopped": False,
    }
    large_report = {
        "samples": 3,
        "confidence": 0.9,
        "answer": "paris",
        "stop_reason": "confident",
        "early_stopped": True,
    }
    return Stages(
        StagePolicy("Lyon", small_report, tokens=8), StagePolicy("Paris", large_report, tokens=30)
    )


async def cascade(factory: Stages, **params: Any) -> PolicyResult:
    spec = CascadeParams(**{**TIERS, **params})
    return await CascadePolicy(spec, build=factory).run(REQ, Decision("auto", spec), UNUSED)


def tokens_by(result: PolicyResult) -> dict[tuple[str, str], int]:
    return {(kind, tier): u.completion_tokens for kind, tier, u in result.usage.items()}


async def test_confident_small_tier_answers_alone() -> None:
    factory = stages(confidence=0.9)
    result = await cascade(factory, small_max_samples=3)
    assert result.message == "Lyon"
    assert factory.built == [AdaptiveBonParams(min_samples=2, max_samples=3)]
    assert factory.small.plans[0].tier == "small"
    assert factory.small.plans[0].params == factory.built[0]
    assert tokens_by(result) == {("sample", "small"): 8}
    report = result.report
    assert report["escalated"] is False and report["final_tier"] == "small"
    assert report["small"]["confidence"] == 0.9 and report["small"]["samples"] == 4
    assert "large" not in report


async def test_unsure_small_tier_escalates_to_large_policy() -> None:
    factory = stages(confidence=0.6)
    result = await cascade(factory, escalate_below=0.8)
    assert result.message == "Paris"
    assert factory.built[1] == AdaptiveBonParams()
    assert factory.large.plans[0].tier == "large"
    assert tokens_by(result) == {("sample", "large"): 30, ("sample", "small"): 8}
    report = result.report
    assert report["escalated"] is True and report["final_tier"] == "large"
    assert report["small"] == {
        "tier": "small",
        "policy": "adaptive_bon",
        "samples": 4,
        "confidence": 0.6,
        "answer": "paris",
        "stop_reason": "max_samples",
        "early_stopped": False,
    }
    assert report["large"]["stop_reason"] == "confident" and report["stop_reason"] == "confident"
    assert report["samples"] == 7


async def test_no_extracted_answer_escalates_whatever_the_confidence() -> None:
    factory = stages(confidence=0.99, answer=None)
    result = await cascade(factory, large_policy="single")
    assert result.report["escalated"] is True
    assert factory.built[1] == SingleParams()


async def test_confidence_exactly_at_threshold_does_not_escalate() -> None:
    result = await cascade(stages(confidence=0.8), escalate_below=0.8)
    assert result.report["escalated"] is False


async def test_stream_says_it_escalates_then_streams_the_large_answer_only() -> None:
    spec = CascadeParams(**TIERS)
    policy = CascadePolicy(spec, build=stages(confidence=0.1))
    events = [e async for e in policy.stream(REQ, Decision("auto", spec), UNUSED)]
    assert [e.text for e in events if isinstance(e, Delta)] == ["Paris", ""]
    verdict = next(e for e in events if isinstance(e, Progress))
    assert (verdict.stage, verdict.escalating, verdict.samples) == ("small", True, 4)
    assert isinstance(events[-1], PolicyResult) and events[-1].report["escalated"] is True


# --- with the real adaptive_bon on a scripted backend ----------------------------------------


def answers_by_tier(small: list[str], large: str, logprob: float = -0.1) -> ScriptedBackend:
    """The small tier answers ``small`` in order across calls; the large tier always ``large``."""
    pending = list(small)

    def respond(tier: str, body: dict[str, Any]) -> list[str]:
        n = int(body.get("n") or 1)
        if tier != "small":
            return [large] * n
        drawn, pending[:n] = pending[:n], []
        return drawn

    return ScriptedBackend(respond, logprob=logprob)


async def test_agreeing_small_samples_stay_on_the_small_tier() -> None:
    backend = answers_by_tier(["Paris"] * 8, "Paris")
    spec = CascadeParams(**TIERS, small_max_samples=4, escalate_below=0.8)
    result = await CascadePolicy(spec).run(REQ, Decision("auto", spec), backend)
    assert result.report["escalated"] is False and result.message == "Paris"
    assert {tier for tier, _ in backend.calls} == {"small"}
    assert sum(int(body["n"]) for _, body in backend.calls) <= 4


async def test_disagreeing_small_samples_escalate_and_usage_covers_both_tiers() -> None:
    # exp(-2) = 0.14 per token: the greedy first sample is unsure, so the small tier votes
    backend = answers_by_tier(["Lyon", "Nice", "Rome", "Lille"], "Paris", logprob=-2.0)
    spec = CascadeParams(**TIERS, small_max_samples=4, large_policy="single")
    result = await CascadePolicy(spec).run(REQ, Decision("auto", spec), backend)
    assert result.report["escalated"] is True and result.message == "Paris"
    assert result.report["small"]["samples"] == 4
    assert {tier for _, tier, _ in result.usage.items()} == {"small", "large"}
    assert [tier for tier, _ in backend.calls][-1] == "large"


async def test_cancellation_reaches_the_small_stage_call() -> None:
    backend = ScriptedBackend(lambda tier, body: ["Paris"], delay_s=60.0)
    spec = CascadeParams(**TIERS)
    task = asyncio.create_task(CascadePolicy(spec).run(REQ, Decision("auto", spec), backend))
    while not backend.calls:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(backend.calls) == 1


@pytest.mark.parametrize(("logprob", "escalated"), [(-0.1, False), (-2.0, True)])
async def test_a_greedy_request_escalates_on_its_one_samples_confidence(
    logprob: float, escalated: bool
) -> None:
    """At temperature 0 the small stage draws one sample; a vote of one says nothing, so its
    token confidence decides (0.905 a token stays, 0.14 escalates), not a fixed 0.75."""
    backend = answers_by_tier(["Paris"], "Paris", logprob=logprob)
    spec = CascadeParams(**TIERS, small_max_samples=4, escalate_below=0.8)
    greedy = replace(REQ, sampling={"temperature": 0})
    result = await CascadePolicy(spec).run(greedy, Decision("auto", spec), backend)
    assert result.report["small"]["stop_reason"] == "greedy"
    assert result.report["escalated"] is escalated


async def test_the_large_stage_stays_within_its_sample_budget() -> None:
    backend = answers_by_tier(["Lyon", "Nice", "Rome", "Lille"], "Paris", logprob=-2.0)
    spec = CascadeParams(**TIERS, small_max_samples=4, large_max_samples=3)
    result = await CascadePolicy(spec).run(REQ, Decision("auto", spec), backend)
    assert result.report["escalated"] is True
    assert sum(int(body.get("n") or 1) for tier, body in backend.calls if tier == "large") <= 3


async def test_a_halved_small_budget_keeps_its_first_sample_gate() -> None:
    """``reasoning_effort: low`` halves small_max_samples 4 -> 2: a confident first sample
    still answers alone, rather than a fixed vote of two (dearer than medium)."""
    backend = answers_by_tier(["Paris"] * 2, "Paris")
    spec = CascadeParams(**TIERS, small_max_samples=2)
    result = await CascadePolicy(spec).run(REQ, Decision("auto", spec), backend)
    assert result.report["small"]["samples"] == 1 and result.report["escalated"] is False
