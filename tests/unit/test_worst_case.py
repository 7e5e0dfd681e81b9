"""Each policy's worst case (``policies.worst_case``) against a backend that spends the most
it can: every sample runs to its limit with text no other sample shares (nothing agrees, no
judge score is read, no probe converges, so no policy stops early), and every prompt costs what
``core.contract.prompt_estimate`` says, the price the bound assumes. The spend must never pass
the bound; where the policy's calls are fixed in advance the bound is exact. A vote gets samples
that take turns between two answers (``pairing``): where nothing at all agrees, ``adaptive_bon``
stops at ``no_consensus``, so a vote's worst case is two answers that never settle."""

from __future__ import annotations

import asyncio
import itertools
import string
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.backend import Choice, Completion, Delta
from core.contract import prompt_estimate
from core.profile import ThinkingPlan
from core.request import Decision, GenRequest
from core.usage import TokenUsage
from policies import registry
from policies.adaptive_bon import AdaptiveBonParams
from policies.cascade import CascadeParams
from policies.convergence import ConvergenceParams
from policies.params import PolicyParams
from policies.single import SingleParams
from policies.speculative import SpeculativeParams
from policies.worst_case import adaptive_rounds, worst_case_tokens
from workers.profiles import PRESETS

CONTEXT = 512
WORDS = ("".join(p) for p in itertools.product(string.ascii_lowercase, repeat=2))


@dataclass
class Exhausting:
    """Every sample: ``max_tokens`` (else the rest of the context) tokens of one fresh
    two-letter word, 3 bytes a token with its space: the estimate's own price of text."""

    spent: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    words: Iterator[str] = WORDS

    def _word(self) -> str:
        return next(self.words)

    def _limit(self, body: dict[str, Any], prompt: int) -> int:
        limit = body.get("max_tokens")
        return int(limit) if limit is not None else CONTEXT - prompt

    def _text(self, limit: int) -> str:
        return " ".join([self._word()] * limit)

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.calls.append(body)
        prompt = prompt_estimate(body)
        limit, n = self._limit(body, prompt), int(body.get("n") or 1)
        choices = tuple(
            Choice(
                index=i,
                text=self._text(limit),
                finish_reason="length",
                token_logprobs=(-5.0,) * limit,
                tokens=("ab",) * limit,
                raw={"message": {"content": "x"}},
            )
            for i in range(n)
        )
        self.spent += prompt + n * limit
        return Completion(choices, TokenUsage(prompt, n * limit), "fake")

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        self.calls.append(body)
        prompt = prompt_estimate(body)
        limit = self._limit(body, prompt)
        word = self._word()
        for i in range(limit):
            await asyncio.sleep(0)  # a real stream waits for its next delta: probes run
            yield Delta(index=0, text=word if i == 0 else " " + word)
        yield Delta(index=0, finish_reason="length")
        self.spent += prompt + limit
        yield Delta(usage=TokenUsage(prompt, limit))


def request(max_tokens: int | None, n: int = 1) -> GenRequest:
    sampling: dict[str, Any] = {"n": n} if n > 1 else {}
    if max_tokens is not None:
        sampling["max_tokens"] = max_tokens
    messages = ({"role": "user", "content": "Which planet is the largest? Explain."},)
    return GenRequest(messages=messages, sampling=sampling, request_id="r1")


def pairing() -> Iterator[str]:
    """Two answers taking turns: a vote on them never settles, nor gives up."""
    return itertools.cycle(["ab", "cd"])


async def spend(
    params: PolicyParams, req: GenRequest, words: Iterator[str] = WORDS
) -> tuple[int, int, Exhausting]:
    """(what the policy spent, its bound, the backend) on the exhausting backend."""
    backend = Exhausting(words=words)
    decision = Decision(tier="small", params=params)
    await registry.build(params).run(req, decision, backend)
    return backend.spent, worst_case_tokens(req, decision, CONTEXT), backend


def test_every_registered_policy_bounds_a_request_from_its_facts() -> None:
    req = GenRequest(messages=({"role": "user", "content": "hi"},), sampling={"max_tokens": 8})
    for name in registry.names():
        params = registry.params_model(name).model_validate({"name": name})
        decision = Decision(tier="small", params=params)
        assert worst_case_tokens(req, decision, CONTEXT) > 8, name


@pytest.mark.parametrize(("max_tokens", "n"), [(8, 1), (8, 3), (None, 1)])
async def test_single_is_exact_and_a_missing_max_tokens_fills_the_context(
    max_tokens: int | None, n: int
) -> None:
    spent, bound, _ = await spend(SingleParams(), request(max_tokens, n))
    assert spent == bound
    if max_tokens is None:
        assert bound == CONTEXT


@pytest.mark.parametrize(
    "params",
    [
        AdaptiveBonParams(),  # gated first sample, rounds of 2 up to 16
        AdaptiveBonParams(min_samples=3, max_samples=3, single_sample_confidence=None),
        AdaptiveBonParams(min_samples=2, max_samples=7, step=4),
    ],
)
async def test_adaptive_bon_every_round_is_exact(params: AdaptiveBonParams) -> None:
    spent, bound, backend = await spend(params, request(8), pairing())
    assert spent == bound
    assert [int(b["n"]) for b in backend.calls] == adaptive_rounds(params)


def test_adaptive_rounds_follow_the_policy_schedule() -> None:
    # The gated sample, one more up to min_samples, then steps of 2 up to 16.
    assert adaptive_rounds(AdaptiveBonParams()) == [1, 1, 2, 2, 2, 2, 2, 2, 2]
    assert adaptive_rounds(AdaptiveBonParams(min_samples=4, max_samples=4)) == [4]


@pytest.mark.parametrize("max_tokens", [40, None])
async def test_convergence_chain_and_probes_stay_within(max_tokens: int | None) -> None:
    params = ConvergenceParams(probe_every=8, max_probes=4)
    spent, bound, backend = await spend(params, request(max_tokens))
    probes = len(backend.calls) - 1
    assert probes >= 1  # the bound was tested with probes drawn, not only the chain
    assert spent <= bound


@pytest.mark.parametrize("max_tokens", [100, None])
async def test_speculative_draft_judge_and_rewrite_of_every_step_stay_within(
    max_tokens: int | None,
) -> None:
    params = SpeculativeParams(
        max_step_tokens=16, max_steps=6, draft_tier="small", judge_tier="small"
    )
    spent, bound, backend = await spend(params, request(max_tokens))
    judged = [b for b in backend.calls if b.get("max_tokens") == 1]
    assert len(judged) >= 1  # every step was judged (and rejected: no digit)
    assert spent <= bound
    assert bound <= 1.5 * spent  # every step drafted, judged and rewritten: close to the bound


async def test_cascade_small_vote_then_escalation_stays_within() -> None:
    params = CascadeParams(
        small_max_samples=3, large_policy="adaptive_bon", small_tier="small", large_tier="small"
    )
    spent, bound, _ = await spend(params, request(8), pairing())
    assert spent == bound  # both stages run every round: nothing settles, so it escalates


async def test_adaptive_bon_with_pruning_stays_within() -> None:
    """Pruning streams every sample after calibration on its own, each paying its prompt."""
    params = AdaptiveBonParams(
        min_samples=2, max_samples=6, single_sample_confidence=None, prune=True, prune_warmup=2
    )
    spent, bound, backend = await spend(params, request(8), pairing())
    assert [int(b["n"]) for b in backend.calls] == [2, 1, 1, 1, 1]  # calibrated, then streamed
    assert spent <= bound


@pytest.mark.parametrize("max_tokens", [120, None])
async def test_speculative_thinking_steps_and_the_answer_stay_within(
    max_tokens: int | None,
) -> None:
    """On a reasoning tier the steps think within the budget, then the judge tier answers."""
    thinking = PRESETS["smollm2_thinking"].thinking
    assert thinking is not None
    params = SpeculativeParams(
        max_step_tokens=16, max_steps=6, draft_tier="small", judge_tier="small"
    )
    decision = Decision("small", params, thinking=ThinkingPlan(thinking, 64, "test"))
    backend, req = Exhausting(), request(max_tokens)
    await registry.build(params).run(req, decision, backend)
    answer = backend.calls[-1]
    assert answer["messages"][-1]["content"].endswith(thinking.answer_prompt)
    assert backend.spent <= worst_case_tokens(req, decision, CONTEXT)
