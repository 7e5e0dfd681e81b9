"""What an ``adaptive_bon`` request returns once it stops drawing: the chosen samples, the
result, its ``ttc`` report, and the ``Progress`` said after each round.

``choose`` picks the samples to return, best first: for free-form samples by text
(``policies.selection``: near-identical, USC or the medoid), for a vote that could not settle
the best-scored sample (``policies.draws.best_scored``), else the plurality of the answers
(``policies.draws.rank_samples``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.backend import Backend
from core.progress import Progress, short_leader
from core.request import GenRequest
from core.result import PolicyResult, ResultChoice
from core.usage import UsageLedger
from policies.draws import (
    Chosen,
    Draw,
    answer_confidence,
    best_scored,
    first_sample_confidence,
    rank_samples,
)
from policies.selection import select_open
from policies.tool_votes import sample_tool_calls
from policies.voting import reported_votes, tally

if TYPE_CHECKING:
    from policies.adaptive_bon import AdaptiveBonParams

# 5 answers: enough to see how the votes split without bloating every response (the no-answer
# bucket, ``policies.voting.NO_ANSWER``, comes on top).
REPORTED_VOTES = 5


async def choose(
    params: AdaptiveBonParams,
    req: GenRequest,
    tier: str,
    backend: Backend,
    draw: Draw,
    ledger: UsageLedger,
    reason: str,
    greedy_first: bool,
) -> Chosen:
    """The samples to return, best first, and how the first was chosen; ``greedy_first``: the
    first sample was drawn greedily (the gate's). One free-form sample is ``first``."""
    if draw.open is not None and len(draw.samples) == 1:
        return Chosen([0], "first", 1.0)  # nothing to compare: a greedy request, a cut
    if draw.open is not None:
        method = params.open_selection if params.selection == "vote" else params.selection
        texts = [sample.text for sample in draw.samples]
        near = reason == "near_identical"
        picked = await select_open(method, req, tier, backend, texts, ledger, near)
        return Chosen(picked.ranked, picked.method, picked.agreement, picked.fallback)
    ranked, selection = rank_samples(draw, params.weighted)
    if reason == "no_consensus":
        best = best_scored(draw, greedy_first)
        return Chosen(
            [best, *(i for i in ranked if i != best)], "greedy" if greedy_first else "logprob"
        )
    return Chosen(ranked, selection)


def round_progress(
    policy: str, tier: str, draw: Draw, ledger: UsageLedger, reason: str | None, weighted: bool
) -> Progress:
    """What the stream says after a round: samples, tokens, the leader and its confidence."""
    current = tally(draw.votes(), weighted=weighted)
    return Progress(
        policy=policy,
        tier=tier,
        round=draw.rounds,
        samples=len(draw.samples),
        completion_tokens=ledger.total.completion_tokens,
        leader=short_leader(current.leader),
        votes=current.leader_count if current.leader is not None else 0,
        confidence=answer_confidence(draw, current, reason),
        stop_reason=reason,
    )


@dataclass(frozen=True)
class Outcome:
    """How one request ended: its params, whether the first round was gated, the stop reason
    and the Beta rule's required confidence."""

    params: AdaptiveBonParams
    gated: bool
    reason: str
    required: float

    def result(
        self, req: GenRequest, draw: Draw, ledger: UsageLedger, chosen: Chosen
    ) -> PolicyResult:
        """The top ``n`` chosen samples as choices (logprobs when the client asked), every
        token of every sample in ``usage``, and the report."""
        keep_logprobs = bool(req.sampling.get("logprobs"))
        choices = tuple(
            ResultChoice(
                index=index,
                text=draw.samples[position].text,
                finish_reason=draw.samples[position].finish_reason or "stop",
                logprobs=draw.samples[position].raw.get("logprobs") if keep_logprobs else None,
                tool_calls=sample_tool_calls(draw.samples[position].raw),
                reasoning=draw.samples[position].reasoning,
            )
            for index, position in enumerate(chosen.ranked[: req.n])
        )
        report = self.report(draw, ledger)
        report.update(chosen.report(draw))
        return PolicyResult(choices=choices, usage=ledger, report=report)

    def report(self, draw: Draw, ledger: UsageLedger) -> dict[str, Any]:
        """The vote's side of ``ttc``: samples, rounds, stop reason, votes and confidence."""
        p, reason = self.params, self.reason
        current = tally(draw.votes(), weighted=p.weighted)
        samples = len(draw.samples)
        early = reason != "max_samples"
        per_sample = ledger.total.completion_tokens / samples
        report: dict[str, Any] = {
            "samples": samples,
            "rounds": draw.rounds,
            "early_stopped": early,
            "stop_reason": reason,
            "confidence": round(answer_confidence(draw, current, reason), 4),
            "votes": reported_votes(current, REPORTED_VOTES),
            "answer": current.leader,
            "required_confidence": round(self.required, 4),
            "tokens_saved": round((p.max_samples - samples) * per_sample) if early else 0,
            "max_samples": p.max_samples,
        }
        if p.prune:
            threshold = None if draw.threshold is None else round(draw.threshold, 4)
            report.update(pruned=draw.pruned, prune_threshold=threshold)
        if self.gated:
            gate_value = first_sample_confidence(draw)
            report["first_sample_confidence"] = None if gate_value is None else round(gate_value, 4)
        return report
