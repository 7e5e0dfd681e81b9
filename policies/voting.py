"""Voting and stopping rules over extracted answers: pure functions.

`tally` counts the votes of samples whose answers `policies.meaning.read_answer` pulled
out (one key per meaning); a sample with no answer is an outcome of its own, `NO_ANSWER`, never
a silent drop: it counts in `Tally.total` and `Tally.unanswered`, competes with the leader in
the stopping statistic, and `reported_votes` shows it. `should_stop` applies
Adaptive-Consistency (Aggarwal et al. 2023) or Early-Stopping Self-Consistency (Li et al.
2024); `cannot_settle` says when the first samples disagree so thoroughly that more would
rarely produce a majority; `adjust_confidence` lets a difficulty estimate tighten or loosen
the required confidence. Nothing here performs I/O or keeps state.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

# The bucket of samples with no extractable answer in a reported tally. In parentheses, which
# `policies.answers.normalise_answer` strips, so no extracted answer can ever spell it.
NO_ANSWER = "(no answer)"


@dataclass(frozen=True)
class Vote:
    """One sample's answer (None if none was extractable) and its mean token log-probability."""

    answer: str | None
    mean_logprob: float | None
    index: int


@dataclass(frozen=True)
class Tally:
    """Result of `tally`. `counts` and `weights` are ordered by rank, leader first.

    `total` counts every vote, answered or not; `leader_index` is the `Vote.index` of the
    sample to return (-1 only when there were no votes).
    """

    counts: Mapping[str, int]
    weights: Mapping[str, float]
    leader: str | None
    leader_count: int
    runner_up_count: int
    total: int
    leader_index: int

    @property
    def unanswered(self) -> int:
        """Votes with no answer: the `NO_ANSWER` outcome."""
        return self.total - sum(self.counts.values())

    @property
    def rival_count(self) -> int:
        """What the leader must beat: the runner-up, or the no-answer outcome when larger."""
        return max(self.runner_up_count, self.unanswered)


def _weight(vote: Vote) -> float:
    return 1.0 if vote.mean_logprob is None else math.exp(vote.mean_logprob)


def _best_index(votes: Sequence[Vote]) -> int:
    """Index of the most confident vote; the earliest one wins a tie."""
    if not votes:
        return -1
    logprobs = [-math.inf if v.mean_logprob is None else v.mean_logprob for v in votes]
    best = max(range(len(votes)), key=lambda position: (logprobs[position], -position))
    return votes[best].index


def tally(votes: Sequence[Vote], weighted: bool = False) -> Tally:
    """Plurality vote over the extracted answers; votes with answer None count for nothing.

    Rank: vote count (or, when `weighted`, the sum of exp(mean_logprob), None weighing 1.0),
    then the mean of the answer's mean log-probabilities (None ignored), then first appearance.
    """
    groups: dict[str, list[Vote]] = {}
    for vote in votes:
        if vote.answer is not None:
            groups.setdefault(vote.answer, []).append(vote)
    weights = {answer: math.fsum(map(_weight, group)) for answer, group in groups.items()}

    def rank(answer: str) -> tuple[float, float]:
        known = [lp for lp in (v.mean_logprob for v in groups[answer]) if lp is not None]
        strength = weights[answer] if weighted else float(len(groups[answer]))
        return strength, (math.fsum(known) / len(known) if known else -math.inf)

    order = sorted(groups, key=rank, reverse=True)  # stable: first appearance breaks ties
    counts = {answer: len(groups[answer]) for answer in order}
    leader = order[0] if order else None
    return Tally(
        counts=counts,
        weights={answer: weights[answer] for answer in order},
        leader=leader,
        leader_count=counts[leader] if leader is not None else 0,
        runner_up_count=counts[order[1]] if len(order) > 1 else 0,
        total=len(votes),
        leader_index=_best_index(groups[leader] if leader is not None else votes),
    )


def reported_votes(current: Tally, limit: int) -> dict[str, int]:
    """The `limit` most-voted answers, then `NO_ANSWER` with the unanswered samples (if any):
    the counts add up to every sample, at most `limit` answers shown."""
    votes = dict(list(current.counts.items())[:limit])
    if current.unanswered:
        votes[NO_ANSWER] = current.unanswered
    return votes


def cannot_settle(current: Tally, *, after: int, no_answer_share: float) -> bool:
    """Whether a vote looks unable to settle: at least `after` samples are in and either no
    two of them agree (every answer distinct, or none at all) or more than `no_answer_share`
    of them state no answer. Adaptive-Consistency's Beta rule would sample on to its cap
    there; a majority rarely forms out of such a start (bench/results/votes/no-consensus/)."""
    if current.total < after or current.total == 0:
        return False
    distinct = max(current.counts.values(), default=0) <= 1
    return distinct or current.unanswered > no_answer_share * current.total


def beta_majority_confidence(a: int, b: int) -> float:
    """P(p > 1/2) for p ~ Beta(a+1, b+1): the Adaptive-Consistency stopping statistic.

    Equals 1 - I_{1/2}(a+1, b+1); for integers this is the binomial sum
    sum_{j<=a} C(a+b+1, j) / 2^(a+b+1), evaluated exactly. 0.5 when a == b.
    """
    if a < 0 or b < 0:
        raise ValueError("vote counts must be non-negative")
    trials = a + b + 1
    favourable = sum(math.comb(trials, j) for j in range(a + 1))
    return float(Fraction(favourable, 2**trials))


def dirichlet_majority_confidence(counts: Sequence[int]) -> float:
    """Confidence that the most-voted answer is the true mode, from all answers' counts.

    Uses the Beta rule on the two leading answers, the standard approximation of the
    Dirichlet posterior used by Adaptive-Consistency.
    """
    ranked = sorted(counts, reverse=True) + [0, 0]
    return beta_majority_confidence(ranked[0], ranked[1])


def window_agrees(answers: Sequence[str | None], window: int) -> bool:
    """Early-Stopping Self-Consistency: the last `window` answers are equal and not None."""
    if window < 1:
        raise ValueError("window must be at least 1")
    recent = answers[-window:]
    return len(answers) >= window and recent[0] is not None and len(set(recent)) == 1


@dataclass(frozen=True)
class StopDecision:
    """`reason` is one of "confident", "window", "max_samples", "continue"."""

    stop: bool
    confidence: float
    reason: str


_StopTest = Callable[[float, float, Sequence[str | None], int], bool]
# rule name -> (stop reason, test of (confidence, required confidence, answers, window))
_STOP_RULES: Mapping[str, tuple[str, _StopTest]] = {
    "beta": ("confident", lambda current, required, _answers, _window: current >= required),
    "window": ("window", lambda _current, _required, answers, size: window_agrees(answers, size)),
}


def should_stop(
    tally: Tally,
    answers_in_order: Sequence[str | None],
    *,
    rule: str,
    confidence: float,
    window: int,
    min_samples: int,
    max_samples: int,
) -> StopDecision:
    """Whether to stop sampling after len(answers_in_order) samples.

    Always stops at `max_samples`, never before `min_samples`; in between `rule` decides:
    "beta" stops once the leader-vs-rival Beta confidence reaches `confidence` (the rival:
    the runner-up, or the no-answer outcome when more samples stated none), "window" once the
    last `window` answers agree. The reported confidence is that Beta confidence (0.0 without
    a leader). Raises ValueError for an unknown rule.
    """
    if rule not in _STOP_RULES:
        raise ValueError(f"unknown stopping rule {rule!r}; expected one of {sorted(_STOP_RULES)}")
    drawn = len(answers_in_order)
    current = (
        beta_majority_confidence(tally.leader_count, tally.rival_count)
        if tally.leader is not None
        else 0.0
    )
    reason, satisfied = _STOP_RULES[rule]
    if drawn >= max_samples:
        return StopDecision(True, current, "max_samples")
    if drawn >= min_samples and satisfied(current, confidence, answers_in_order, window):
        return StopDecision(True, current, reason)
    return StopDecision(False, current, "continue")


# Bounds of a required confidence: below 0.5 a coin flip would stop; 1.0 would never stop.
_CONFIDENCE_FLOOR, _CONFIDENCE_CEILING = 0.5, 0.999


def adjust_confidence(confidence: float, difficulty: float | None, strength: float = 0.5) -> float:
    """The required stopping confidence, tightened for hard prompts and loosened for easy ones.

    With s = strength * (2 * difficulty - 1) in [-strength, strength]:
    hard (s > 0) shrinks the doubt, c' = 1 - (1 - c) * (1 - s); easy (s < 0) moves c toward
    0.5, c' = c - |s| * (c - 0.5). difficulty None or 0.5 leaves c unchanged. Difficulty is
    clamped to [0, 1]; the result to [0.5, 0.999]; monotone non-decreasing in difficulty.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError("strength must be in [0, 1]")
    shift = 0.0 if difficulty is None else strength * (2 * min(max(difficulty, 0.0), 1.0) - 1)
    if shift > 0:
        confidence = 1 - (1 - confidence) * (1 - shift)
    else:
        confidence = confidence + shift * (confidence - 0.5)
    return min(max(confidence, _CONFIDENCE_FLOOR), _CONFIDENCE_CEILING)
