"""DeepConf-style pruning in ``adaptive_bon`` (``policies.pruning``).

``WaveringBackend`` is scripted, not a worker: the purpose is a sample whose confidence falls
at a known token, which a real worker cannot produce on demand. Calibration rounds come from
``chat`` (n samples, every token at log-probability -0.1); pruned rounds stream one sample per
request with its tokens' log-probabilities and the worker's running usage after each token, as
vLLM does with ``logprobs`` and ``continuous_usage_stats``. A sample whose seed is odd wavers:
from token ``WAVERS_AT`` on its tokens drop to -3.0 and its answer turns to "7".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.backend import Completion, Delta
from core.errors import BudgetReached, UpstreamError
from core.request import Decision, GenRequest
from core.usage import TokenUsage
from policies.adaptive_bon import AdaptiveBonParams, AdaptiveBonPolicy
from policies.pruning import calibrated_threshold, lowest_window_mean
from tests.fakes import completion

STEADY = "so the answer is 5 because two plus three makes five and that is all".split()
WAVERS_AT = 3  # before the answer token: a wavering sample answers "7"
WINDOW = 4
PROMPT = 10


@dataclass
class WaveringBackend:
    streams: list[dict[str, Any]] = field(default_factory=list)
    closed_early: list[int] = field(default_factory=list)  # seeds of streams cut short

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        return completion([" ".join(STEADY)] * int(body.get("n") or 1), PROMPT)

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        self.streams.append(body)
        seed = int(body["seed"])
        wavers = seed % 2 == 1
        finished = False
        try:
            for i, word in enumerate(STEADY):
                await asyncio.sleep(0)
                low = wavers and i >= WAVERS_AT
                token = "7" if low and word == "5" else word
                entry = {"token": token, "logprob": -3.0 if low else -0.1}
                yield Delta(text=token + " ", raw={"logprobs": {"content": [entry]}})
                yield Delta(usage=TokenUsage(PROMPT, i + 1))
            finished = True
            yield Delta(finish_reason="stop")
        finally:
            if not finished:
                self.closed_early.append(seed)


def request() -> GenRequest:
    return GenRequest(
        messages=({"role": "user", "content": "2 + 3?"},), request_id="r", sampling={"seed": 100}
    )


async def run(backend: WaveringBackend, **params: Any) -> Any:
    fields = {
        "prune": True,
        "prune_window": WINDOW,
        "prune_warmup": 2,
        "single_sample_confidence": None,
        "min_samples": 2,
        "max_samples": 6,
        "step": 2,
        "confidence": 0.99,
        "stopping": "window",
        "window": 6,
        **params,
    }
    p = AdaptiveBonParams(**fields)
    return await AdaptiveBonPolicy(p).run(request(), Decision("t", p), backend)


def test_lowest_window_mean_and_the_calibrated_threshold() -> None:
    assert lowest_window_mean([-0.1, -0.1, -2.0, -0.1, -0.1], 2) == pytest.approx(-1.05)
    assert lowest_window_mean([-1.0], 4) == -1.0 and lowest_window_mean([], 4) is None
    traces = [[-0.1] * 8, [-0.5] * 8, [-0.2] * 8, [-0.3] * 8]
    assert calibrated_threshold(traces, 4, keep=1.0) == -0.5  # every trace stays above
    assert calibrated_threshold(traces, 4, keep=0.75) == -0.3  # 3 of 4 stay above
    assert calibrated_threshold([[]], 4, keep=0.9) is None


async def test_a_wavering_sample_is_stopped_upstream_and_does_not_vote() -> None:
    backend = WaveringBackend()
    result = await run(backend)
    report = result.report
    wavering = [int(b["seed"]) for b in backend.streams if int(b["seed"]) % 2 == 1]
    assert wavering and sorted(backend.closed_early) == sorted(wavering)
    assert report["pruned"] == len(wavering)
    assert report["prune_threshold"] == pytest.approx(-0.1)
    assert report["answer"] == "5" and set(report["votes"]) == {"5"}
    assert all(b["n"] == 1 and b["logprobs"] for b in backend.streams)
    # Every token generated is billed: 2 calibration samples, the kept and the pruned ones
    # (a pruned one is stopped at the first full window below the threshold).
    kept = len(backend.streams) - len(wavering)
    stopped_at = WAVERS_AT + 1  # the first window holding a -3.0 token is below -0.1
    expected = len(STEADY) * (2 + kept) + stopped_at * len(wavering)
    assert result.usage.total.completion_tokens == expected


async def test_a_sample_shorter_than_one_window_is_never_pruned() -> None:
    backend = WaveringBackend()
    result = await run(backend, prune_window=len(STEADY) + 1)
    assert backend.streams and backend.closed_early == [] and result.report["pruned"] == 0
    assert "7" in result.report["votes"]  # the wavering samples finished and voted


@dataclass
class FailingBackend(WaveringBackend):
    """Streams as ``WaveringBackend``; the sample with seed ``fails_seed`` raises ``error``
    after ``FAIL_AT`` tokens, as the metered backend does when the contract cuts a stream."""

    error: Exception = field(default_factory=lambda: BudgetReached("contract spent"))
    fails_seed: int = 103

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        count = 0
        async for delta in super().stream_chat(tier, body, affinity=affinity):
            yield delta
            count += bool(delta.text)
            if int(body["seed"]) == self.fails_seed and count == FAIL_AT:
                raise self.error


FAIL_AT = 3


async def test_a_round_the_contract_cuts_answers_with_what_finished_and_bills_it_all() -> None:
    backend = FailingBackend()
    result = await run(backend, prune_window=len(STEADY) + 1)  # nothing pruned
    report = result.report
    assert report["stop_reason"] == "budget" and report["answer"] == "5"
    streamed = len(backend.streams)
    # The calibration pair, then a round of 2: one finished, one cut after FAIL_AT tokens;
    # the cut one does not vote, its tokens are billed.
    assert streamed == 2 and report["samples"] == 3
    assert result.usage.total.completion_tokens == 3 * len(STEADY) + FAIL_AT


async def test_a_failing_sample_stops_its_round_upstream() -> None:
    backend = FailingBackend(error=UpstreamError("worker died"), fails_seed=102)
    with pytest.raises(UpstreamError):
        await run(backend, prune_window=len(STEADY) + 1)
    assert sorted(backend.closed_early) == [102, 103]  # the sibling was stopped too
