"""When ``adaptive_bon`` stops drawing: its stop rules over a ``Draw``, tried in order.

After each round ``stop_reason`` returns the first that holds, or None to draw another round:

1. ``max_samples``: the budget is spent;
2. free-form samples (``Draw.open``, ``policies.selection``): ``near_identical`` when the first
   two are at least ``near_identical`` similar, ``open_samples`` once that many are drawn;
3. ``confident_first_sample``: the gate's one sample is confident enough;
4. ``confident`` / ``window``: ``policies.voting.should_stop``'s Beta rule (Adaptive-Consistency)
   or window rule (ESC), for votes that can settle;
5. ``no_consensus``: the first samples disagree so thoroughly (``policies.voting.cannot_settle``)
   that more would rarely produce a majority: the best-scored sample answers;
6. ``decided``: the leader is ahead by more votes than samples remain.

Min-samples holds for 4-6 as it does for the Beta rule: a fixed best-of-N never stops early.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.draws import Draw, first_sample_confidence, leader_is_decided
from policies.selection import similarity
from policies.voting import cannot_settle, should_stop, tally


@dataclass(frozen=True)
class StopRules:
    """One request's stop rules, from ``AdaptiveBonParams`` and the router's difficulty.

    ``confidence`` is the Beta rule's required confidence (already adjusted for difficulty);
    ``gate`` the first sample's threshold when the first round is the gate's one sample (None:
    no gate); ``no_consensus_after`` None turns that rule off.
    """

    max_samples: int
    min_samples: int
    rule: str
    confidence: float
    window: int
    weighted: bool
    gate: float | None
    no_consensus_after: int | None
    no_answer_share: float
    open_samples: int
    near_identical: float


def stop_reason(draw: Draw, rules: StopRules) -> str | None:
    """Why sampling stops after the rounds in ``draw`` (see the module docstring), or None."""
    if draw.requested >= rules.max_samples:
        return "max_samples"
    if draw.open is not None:
        return _open_stop(draw, rules)
    if rules.gate is not None and draw.rounds == 1:
        if (first_sample_confidence(draw) or 0.0) >= rules.gate:
            return "confident_first_sample"
    current = tally(draw.votes(), weighted=rules.weighted)
    decision = should_stop(
        current,
        draw.answers,
        rule=rules.rule,
        confidence=rules.confidence,
        window=rules.window,
        min_samples=rules.min_samples,
        max_samples=rules.max_samples,
    )
    if decision.stop:
        return decision.reason
    if draw.requested < rules.min_samples:
        return None
    after = rules.no_consensus_after
    if after is not None and cannot_settle(
        current, after=after, no_answer_share=rules.no_answer_share
    ):
        return "no_consensus"
    remaining = rules.max_samples - draw.requested
    return "decided" if leader_is_decided(current, remaining, rules.weighted) else None


def _open_stop(draw: Draw, rules: StopRules) -> str | None:
    texts = [sample.text for sample in draw.samples]
    if len(texts) >= 2 and similarity(texts[0], texts[1]) >= rules.near_identical:
        return "near_identical"
    if draw.requested >= open_target(rules):
        return "open_samples"
    return None


def open_target(rules: StopRules) -> int:
    """How many free-form samples to draw at most: ``open_samples``, within the budget."""
    return min(rules.open_samples, rules.max_samples)
