"""The samples a multi-sample policy drew, and how the answer is chosen from them.

``Draw`` holds the samples of one ``adaptive_bon`` request in the order they arrived, with
their extracted answers (or, for a tools request, their call keys: ``policies.tool_votes``).
The functions read it: the gate's first-sample confidence, the leader's confidence, whether
the leader is decided, and the ranking of the samples a client gets back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.backend import Choice
from core.request import GenRequest
from policies.answers import answer_span_confidence, cluster_key
from policies.meaning import AnswerContext, read_answer
from policies.selection import similarity
from policies.tool_votes import Schemas, sample_tool_calls, tool_schemas, vote_key
from policies.voting import Tally, Vote, beta_majority_confidence, tally


@dataclass
class Draw:
    """The samples drawn so far for one request, in the order they arrived.

    ``answers`` holds each sample's vote (``policies.meaning``: one key per meaning, None when
    it states no answer), ``stated`` the answer as the sample wrote it (the gate finds it among
    the sample's tokens). ``context`` is what the prompt says about its answers (its options).
    """

    samples: list[Choice] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    stated: list[str | None] = field(default_factory=list)
    requested: int = 0
    rounds: int = 0
    context: AnswerContext = field(default_factory=AnswerContext)
    schemas: Schemas | None = None  # a tools request: samples vote on their calls
    pruned: int = 0  # samples stopped for low confidence (``policies.pruning``)
    threshold: float | None = None  # the pruning threshold, once calibrated
    open: str | None = None  # why the samples are selected as free text (None: they vote)

    def add(self, choices: Sequence[Choice], requested: int, mode: str | None) -> None:
        """Add one round's samples; ``mode`` None reads no answers (free-form selection)."""
        self.rounds += 1
        self.requested += requested
        self.samples.extend(choices)
        for choice in choices:
            key, stated = self._answer(choice, mode)
            self.answers.append(key)
            self.stated.append(stated)

    def _answer(self, choice: Choice, mode: str | None) -> tuple[str | None, str | None]:
        if self.schemas is not None:
            key = vote_key(sample_tool_calls(choice.raw), self.schemas)
            return key, key
        answer = None if mode is None else read_answer(choice.text, mode, self.context)
        return (None, None) if answer is None else (answer.key, answer.stated)

    def votes(self, keys: Sequence[str | None] | None = None) -> list[Vote]:
        """One vote per sample, on its extracted answer or on ``keys``."""
        chosen = self.answers if keys is None else keys
        return [
            Vote(key, sample.mean_logprob, position)
            for position, (key, sample) in enumerate(zip(chosen, self.samples, strict=True))
        ]


def request_schemas(req: GenRequest) -> Schemas | None:
    """The offered functions' schemas when the samples may call them (``policies.tool_votes``)."""
    tools = req.passthrough.get("tools")
    if not tools or req.passthrough.get("tool_choice") == "none":
        return None
    return tool_schemas(tools)


def first_sample_confidence(draw: Draw) -> float | None:
    """The gate's statistic: probability of the first sample's answer tokens (None: no answer)."""
    if not draw.samples or draw.stated[0] is None:
        return None
    first = draw.samples[0]
    return answer_span_confidence(first.tokens, first.token_logprobs, draw.stated[0])


def answer_confidence(draw: Draw, current: Tally, reason: str | None) -> float:
    """The answer's confidence: the gate's measure when one sample decided (the gate, or a
    greedy request's one sample: a vote of one says nothing), else the leader's
    (``leader_confidence``)."""
    if reason in ("confident_first_sample", "greedy"):
        return first_sample_confidence(draw) or 0.0
    return leader_confidence(current)


def leader_confidence(current: Tally) -> float:
    """Beta confidence that the leader beats its rival, the runner-up or the no-answer outcome
    (0.0 without a leader)."""
    if current.leader is None:
        return 0.0
    return beta_majority_confidence(current.leader_count, current.rival_count)


def leader_is_decided(current: Tally, remaining: int, weighted: bool) -> bool:
    """Whether the leader stays first even if every remaining sample backs the runner-up.

    A sample adds 1 to its answer's count, or at most 1 to its weight (exp of a mean
    log-probability, or 1.0 without one); strictly ahead, because a tie could go either way.
    """
    if current.leader is None:
        return False
    strengths = list((current.weights if weighted else current.counts).values())
    runner_up = strengths[1] if len(strengths) > 1 else 0.0
    return strengths[0] > runner_up + remaining


def rank_samples(draw: Draw, weighted: bool) -> tuple[list[int], str]:
    """Positions of the samples to return, best first, and how the first was selected.

    One sample per distinct answer (its most confident), answers in tally order
    ("plurality"); with no extracted answer, per ``cluster_key`` cluster ("cluster" when two
    samples share one, else "logprob": every cluster is a single sample, ranked by mean
    log-probability).
    """
    answered = any(answer is not None for answer in draw.answers)
    keys = draw.answers if answered else [cluster_key(s.text) or None for s in draw.samples]
    votes = draw.votes(keys)
    current = tally(votes, weighted=weighted and answered)
    if current.leader is None:
        return [current.leader_index], "logprob"
    ranked = [_most_confident(votes, key) for key in current.counts]
    if answered:
        return ranked, "plurality"
    return ranked, "cluster" if current.leader_count > 1 else "logprob"


def _most_confident(votes: Sequence[Vote], key: str) -> int:
    """Position of the vote for ``key`` with the highest mean log-probability (earliest on ties)."""
    group = [vote for vote in votes if vote.answer == key]
    best = max(
        group, key=lambda v: (-math.inf if v.mean_logprob is None else v.mean_logprob, -v.index)
    )
    return best.index


def best_scored(draw: Draw, greedy_first: bool) -> int:
    """The sample that answers a vote that cannot settle: the first when it was drawn greedily
    (the model's single best guess), else the one with the highest mean log-probability
    (the earliest on ties)."""
    if greedy_first or len(draw.samples) == 1:
        return 0
    scores = [-math.inf if s.mean_logprob is None else s.mean_logprob for s in draw.samples]
    return max(range(len(scores)), key=lambda position: (scores[position], -position))


@dataclass(frozen=True)
class Chosen:
    """The samples a request returns, best first, and how the first was chosen: ``plurality``,
    ``cluster`` or ``logprob`` (``rank_samples``); ``greedy`` or ``logprob`` when the vote could
    not settle (``best_scored``); ``near_identical``, ``usc`` or ``medoid`` for free-form
    samples (``policies.selection``; ``first`` when there was one), with the chosen one's
    mean similarity to the others (``agreement``) and why USC fell back, if it did."""

    ranked: list[int]
    selection: str
    agreement: float | None = None
    fallback: str | None = None

    def report(self, draw: Draw) -> dict[str, Any]:
        """What ``ttc`` says of the choice; for free-form samples no votes and no answer (none
        was voted on), the shape and why, and the agreement as the confidence."""
        out: dict[str, Any] = {"selection": self.selection}
        if draw.open is None:
            out["answer"] = draw.answers[self.ranked[0]]
            return out
        out.update(shape="open", shape_reason=draw.open, votes={}, answer=None)
        out["confidence"] = round(self.agreement if self.agreement is not None else 0.0, 4)
        if len(draw.samples) > 1:
            out["similarity"] = round(similarity(draw.samples[0].text, draw.samples[1].text), 4)
        if self.fallback is not None:
            out["selection_fallback"] = self.fallback
        return out
