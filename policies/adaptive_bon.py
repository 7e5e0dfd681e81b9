"""``adaptive_bon``: adaptive best-of-N, i.e. self-consistency with sequential stopping.

Samples are drawn in rounds on ``decision.tier``, each round one ``backend.chat`` call whose ``n``
is the round's size: ``min_samples`` first, then ``step`` more, never past ``max_samples``.
Every round asks for ``logprobs`` (ties, weighting and the gate need them) and carries
``affinity=request_id``, so all rounds land on the worker whose prefix cache holds the prompt.
The client's ``max_tokens``, ``stop`` and other fields go upstream unchanged. Temperature: the
gated first sample is greedy (``greedy_first``) whatever the client sent, and every voting sample
uses the client's ``temperature`` when set, else ``params.temperature``. A client ``seed`` is
offset by the samples already drawn, so a later round does not repeat an earlier one.

A tools request votes on the calls instead of extracted answers (``policies.tool_votes``: name
plus canonical JSON arguments, or "no call"; invalid calls vote for nothing) and returns the
winning sample's ``tool_calls``.

After each round the samples' answers (``params.answer_mode``; one key per meaning,
``policies.meaning``, so "(B)", "B." and the option's text are one vote) are tallied, samples
with none in the ``NO_ANSWER`` bucket, and the rules of ``policies.stop_rules`` give the
``stop_reason``: ``max_samples``, ``confident_first_sample`` (the gate's greedy sample was sure
of its answer), ``confident`` / ``window`` (Beta / window rule; the Beta rule's required
confidence is ``adjust_confidence(confidence, difficulty, difficulty_prior)``),
``no_consensus`` (from ``no_consensus_after`` samples on, no two answers agree or more than
``no_answer_share`` state none: the greedy first sample answers, else the most confident one),
``decided`` (the runner-up cannot catch up); ``greedy`` when the client sent temperature 0 (one
sample: vLLM refuses ``n`` > 1 then); ``budget`` / ``deadline`` when the compute contract
(``core.contract``) refused the next round or cut the one in flight (the samples drawn vote;
none: the error). Every reason but ``max_samples`` is an early stop.

Selection: plurality of the answers, ties broken by mean token log-probability (votes weighted
by probability when ``weighted``); the returned text is the leader's most confident sample. A
client asking ``n`` > 1 gets the most confident sample of each of the top ``n`` distinct
answers, ordered by votes. ``min_samples == max_samples`` with the gate off is one round: plain
fixed best-of-N majority vote, the baseline (with no answer anywhere, samples cluster by
``cluster_key``, else the most confident wins). A request deadline cancels the round in flight
(the service's timeout); nothing here catches the cancellation.

Free-form answers (``policies.selection``) are never voted on: with ``selection`` ``usc`` or
``medoid`` from the start, or when the first sample of an adaptive vote is open (no short answer,
or a long text that marks none; ``ttc.shape: open`` and ``shape_reason`` say so), samples are
read as texts: one more after the first, a stop (``near_identical``) when those two are alike,
else up to ``open_samples`` (``stop_reason: open_samples``), then USC (one ``judge`` call) or
the medoid picks the answer (``ttc.selection``).

Pruning (``prune``, DeepConf-style, ``policies.pruning``): once ``prune_warmup`` sampled answers
have finished (the gate's greedy sample excluded), each later round streams its samples one per
request, and a sample whose mean log-probability over its last ``prune_window`` tokens falls
below the threshold those answers calibrated (``prune_keep`` of them never fell below it) is
closed upstream at once; it does not vote, its tokens are billed, and ``pruned`` counts it.

``stream`` yields a ``core.progress.Progress`` after every round (samples so far, the leading
answer, its votes and confidence, completion tokens, and the stop reason on the last round),
then the decided answer at once: the winner's thinking and text as deltas, its finish, the
result. On a reasoning tier the stream is live within rounds too: each round's samples are
streamed one per request, and the first one's thinking goes out as ``Delta(reasoning=...)`` as
it arrives; the streamed response's reasoning is that live thinking (not the winner's own,
which a non-streamed request returns), so every view of it agrees (the Responses API's
reasoning item and ``response.completed``). Elsewhere a round is one call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from core.backend import Backend, Choice, Delta
from core.contract import prompt_estimate
from core.errors import ContractReached, UpstreamError
from core.request import Decision, GenRequest
from core.result import PolicyResult
from core.usage import TokenUsage, UsageLedger
from policies import worst_case
from policies.base import PolicyEvent, Registration, answer_deltas, cancel_now, drain_while
from policies.bon_outcome import Outcome, choose, round_progress
from policies.draws import (
    Draw,
    request_schemas,
)
from policies.facts import Facts
from policies.meaning import AnswerContext
from policies.params import AnswerMode, Budget, Capped, PolicyParams
from policies.pruning import calibrated_threshold, draw_streamed
from policies.selection import (
    USC_MAX_CANDIDATES,
    OpenSelection,
    Selection,
    open_shape,
)
from policies.stop_rules import StopRules, open_target, stop_reason
from policies.thinking import thinking_of
from policies.voting import adjust_confidence


class AdaptiveBonParams(PolicyParams):
    """Adaptive best-of-N: sample in rounds, stop once the leading answer is settled.

    Defaults were tuned on bench/data/facts-dev.jsonl (never on facts-test) for the product's
    target: best-of-8 accuracy at no more than a third of its tokens. A confident greedy first
    sample answers alone; otherwise samples vote, with the Beta rule at 0.9 and at most 16.
    ``min_samples == max_samples`` with the gate off is plain fixed best-of-N.

    Temperature: the gated first sample is greedy whatever temperature the client sent; the
    voting samples use the client's temperature when it sent one, else ``temperature``. So a
    client sending 0.7 (as many chat front-ends do) gets what a client sending none gets.
    """

    name: Literal["adaptive_bon"] = "adaptive_bon"
    min_samples: Annotated[int, Capped("max_samples", follows="max_samples")] = Field(
        2, ge=1, le=256
    )
    step: int = Field(2, ge=1, le=64)
    max_samples: Annotated[int, Budget("max_samples")] = Field(16, ge=1, le=256)
    stopping: Literal["beta", "window"] = "beta"
    confidence: float = Field(0.9, gt=0.5, lt=1.0)
    window: int = Field(5, ge=2, le=64)
    answer_mode: AnswerMode = "auto"
    weighted: bool = False
    # Gate on the first sample: when its answer tokens' geometric-mean probability clears this,
    # one sample is enough (DeepConf). None turns the gate off. 0.75 (with at most 16 votes at
    # 0.9): on facts-dev, best-of-8's accuracy at about half its tokens; 0.6 with at most 6
    # spent a fifth of them but lost 7-10 points.
    single_sample_confidence: float | None = Field(0.75, gt=0.0, le=1.0)
    # The gated first sample is greedy (temperature 0), also when the client sent a temperature:
    # the mode is the best single guess, and the gate reads its confidence. A client's 0.7 on
    # the gate sample (bench/results/temperature/): facts-dev 71.7% at 62 tokens a question,
    # against 83.3% at 47 with no temperature; greedy again, 81.7% at 54 (best-of-8: 91.7%, 149).
    greedy_first: bool = True
    # How strongly the router's difficulty moves the required confidence (0 = not at all).
    difficulty_prior: float = Field(0.5, ge=0.0, le=1.0)
    # The voting samples' temperature when the client sends none; a client's replaces it.
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    # DeepConf-style pruning (``policies.pruning``): once ``prune_warmup`` sampled answers have
    # finished, later samples stream one by one and stop when their mean log-probability over
    # their last ``prune_window`` tokens falls below what ``prune_keep`` of those held.
    prune: bool = False
    prune_window: int = Field(32, ge=2, le=4096)
    prune_warmup: int = Field(2, ge=1, le=64)
    prune_keep: float = Field(0.9, gt=0.0, le=1.0)
    # Stop a vote that cannot settle (``policies.voting.cannot_settle``): once this many samples
    # are in and no two answers agree, or more than ``no_answer_share`` of them state none,
    # the best-scored sample answers (``stop_reason: no_consensus``). None: off. 4, on the
    # tuning sets (bench/results/votes/no-consensus/, 3 runs): 13% (facts-dev) and 31%
    # (hard-dev) fewer tokens than off, pooled accuracy 62.2% against 61.5%; at 6, 7% and 26%
    # more tokens than at 4 for the same pooled accuracy.
    no_consensus_after: int | None = Field(4, ge=2, le=64)
    no_answer_share: float = Field(0.5, ge=0.0, lt=1.0)
    # How the answer is chosen (``policies.selection``): "vote" on extracted answers, or, for
    # free-form answers, "usc" or "medoid" from the first sample on (the router's choice for
    # open-shaped requests). A "vote" whose first sample is open (no short answer, or a long
    # text that marks none) is selected by ``open_selection`` instead.
    selection: Selection = "vote"
    # medoid: on the tuning sets with extraction off (bench/results/votes/selection/, 3 runs),
    # 80.6% / 25.6% against USC's 63.9% / 14.4% (SmolLM2-135M judging itself), greedy's 80.0%
    # / 23.3% and a plurality of 4's 73.3% / 20.0%.
    open_selection: OpenSelection = "medoid"
    # Whether the first sample may overturn a vote's closed shape (False: always vote).
    shape_check: bool = True
    # Free-form samples to draw at most (within max_samples); 9: USC names one by a digit.
    open_samples: int = Field(4, ge=2, le=USC_MAX_CANDIDATES)
    # Word-set Jaccard of the first two free-form samples at which sampling stops. 0.8: open
    # prompts' sample pairs on SmolLM2-135M at 0.7 measured at most 0.53 (24 pairs of 8 prompts:
    # poem, haiku, email, recipe, code, ...), and two six-word sentences differing in their last
    # word (the answer) score 0.71; rewordings of one sentence score 1.0.
    near_identical: float = Field(0.8, gt=0.0, le=1.0)


class AdaptiveBonPolicy:
    """Adaptive best-of-N on one tier; see the module docstring for the contract."""

    name: ClassVar[str] = "adaptive_bon"

    def __init__(self, params: AdaptiveBonParams) -> None:
        self.params = params
        # A request may lower max_samples below the configured min_samples: the budget wins.
        self._min_samples = min(params.min_samples, params.max_samples)
        # min_samples == max_samples asks for fixed best-of-N: no gate skips the vote.
        self._gated = (
            params.single_sample_confidence is not None and self._min_samples < params.max_samples
        )
        self._rules = StopRules(
            max_samples=params.max_samples,
            min_samples=self._min_samples,
            rule=params.stopping,
            confidence=params.confidence,
            window=params.window,
            weighted=params.weighted,
            gate=params.single_sample_confidence if self._gated else None,
            no_consensus_after=params.no_consensus_after,
            no_answer_share=params.no_answer_share,
            open_samples=params.open_samples,
            near_identical=params.near_identical,
        )

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult:
        async with contextlib.aclosing(self._rounds(req, decision, backend)) as events:
            async for event in events:
                if isinstance(event, PolicyResult):
                    return event
        raise RuntimeError("adaptive_bon's rounds ended without a result")

    async def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncGenerator[PolicyEvent, None]:
        """``Progress`` after every round, then the decided answer (``answer_deltas``: the
        winner's thinking, text and finish), then the result."""
        live = thinking_of(decision) is not None and request_schemas(req) is None
        streamed: list[str] = []  # the live thinking the client was sent
        async with contextlib.aclosing(self._rounds(req, decision, backend, live)) as events:
            async for event in events:
                if isinstance(event, Delta):
                    streamed.append(event.reasoning)
                if isinstance(event, PolicyResult):
                    if live:  # every view of this response shows the thinking it streamed
                        first = replace(event.choices[0], reasoning="".join(streamed))
                        event = replace(event, choices=(first, *event.choices[1:]))
                    for delta in answer_deltas(event, thinking=not live):
                        yield delta
                yield event

    async def _rounds(
        self, req: GenRequest, decision: Decision, backend: Backend, live: bool = False
    ) -> AsyncGenerator[PolicyEvent, None]:
        """Draw rounds until a stop rule fires: ``Progress`` after each, then the result;
        ``live``: each round's first sample's thinking as it arrives, as ``Delta``s."""
        p = self.params
        required = adjust_confidence(p.confidence, decision.difficulty, p.difficulty_prior)
        rules = replace(self._rules, confidence=required)
        ledger = UsageLedger()
        draw = Draw(context=AnswerContext.of(req.question), schemas=request_schemas(req))
        if p.selection != "vote" and draw.schemas is None:
            draw.open = f"selection: {p.selection}"
        reason: str | None = None
        # A client temperature of 0 makes every voting sample the greedy one: one sample is
        # the answer, and vLLM refuses n > 1 at temperature 0.
        greedy = self._temperature(req, drawn=1) == 0.0
        while reason is None:
            size = 1 if greedy else self._round_size(draw)
            feed: asyncio.Queue[Delta] = asyncio.Queue()
            work = self._draw(
                req, decision.tier, backend, draw, size, feed.put_nowait if live else None
            )
            task = asyncio.ensure_future(work)
            try:
                async for thought in drain_while(task, feed):
                    yield thought
                choices, used, cut = task.result()
            except ContractReached as stop:  # the compute contract: vote on what was drawn
                if not draw.samples:
                    raise
                reason = stop.reason
                break
            finally:
                await cancel_now(task)
            ledger.add("sample", decision.tier, used)
            draw.add(choices, size, None if draw.open else p.answer_mode)
            if cut is not None and not draw.samples:
                raise cut  # the contract cut the first round: nothing to answer with
            if draw.rounds == 1 and draw.open is None and draw.samples and self._adaptive(draw):
                draw.open = open_shape(draw.samples[0].text, draw.answers[0])
            if cut is not None:
                reason = cut.reason
            else:
                reason = "greedy" if greedy else stop_reason(draw, rules)
            yield round_progress(self.name, decision.tier, draw, ledger, reason, p.weighted)
        if not draw.samples:
            raise UpstreamError("the worker returned no samples", code="no_samples")
        greedy_first = self._gated and p.greedy_first
        chosen = await choose(p, req, decision.tier, backend, draw, ledger, reason, greedy_first)
        outcome = Outcome(p, self._gated, reason, required)
        yield outcome.result(req, draw, ledger, chosen)

    def _adaptive(self, draw: Draw) -> bool:
        """Whether the first sample may overturn the closed shape: when ``shape_check``, not
        for tool calls (their votes are calls, not text) nor a fixed best-of-N (the plurality
        baseline)."""
        p = self.params
        return p.shape_check and draw.schemas is None and self._min_samples < p.max_samples

    async def _draw(
        self,
        req: GenRequest,
        tier: str,
        backend: Backend,
        draw: Draw,
        size: int,
        live: Callable[[Delta], None] | None = None,
    ) -> tuple[Sequence[Choice], TokenUsage, ContractReached | None]:
        """One round: one call of ``n = size``; once pruning is calibrated, or when ``live``
        wants the first sample's thinking as it comes, ``size`` streams of one sample each
        (any of which pruning may stop, ``policies.pruning``). The contract's stop, when it
        cut a streamed round, comes with what the round finished and spent."""
        threshold = self._threshold(draw)
        if threshold is None and live is None:
            body = self._body(req, size, draw.requested)
            completion = await backend.chat(tier, body, affinity=req.request_id)
            return completion.choices[:size], completion.usage, None
        bodies = [self._body(req, 1, draw.requested + i) for i in range(size)]
        done = await draw_streamed(
            backend,
            tier,
            bodies,
            threshold=threshold,
            window=self.params.prune_window,
            prompt_estimate=prompt_estimate(bodies[0]),
            affinity=req.request_id,
            live=live,
        )
        draw.pruned += done.pruned
        draw.threshold = threshold if threshold is not None else draw.threshold
        return done.choices, done.usage, done.stop

    def _threshold(self, draw: Draw) -> float | None:
        """The pruning threshold, calibrated on the sampled answers drawn so far (never on the
        gate's greedy first sample); None while pruning is off or not yet calibrated."""
        p = self.params
        if not p.prune or draw.schemas is not None:
            return None
        sampled = draw.samples[1:] if self._gated and p.greedy_first else draw.samples
        traces = [s.token_logprobs for s in sampled if s.token_logprobs]
        if len(traces) < p.prune_warmup:
            return None
        return calibrated_threshold(traces, p.prune_window, p.prune_keep)

    def _round_size(self, draw: Draw) -> int:
        """The gate's one sample first; free-form samples then one more (the first two are
        compared), then the rest of ``open_samples``; votes top up to min_samples, then step."""
        p = self.params
        if draw.rounds == 0 and self._gated:
            return 1
        if draw.open is not None and draw.rounds > 0:
            wanted = 1 if draw.requested == 1 else open_target(self._rules) - draw.requested
        else:
            wanted = max(self._min_samples - draw.requested, 0) or p.step
        return max(min(wanted, p.max_samples - draw.requested), 1)

    def _body(self, req: GenRequest, size: int, drawn: int) -> dict[str, Any]:
        seed = req.sampling.get("seed")
        return req.body(
            n=size,
            logprobs=True,
            temperature=self._temperature(req, drawn),
            seed=None if seed is None else int(seed) + drawn,
        )

    def _temperature(self, req: GenRequest, drawn: int) -> float:
        """0 for the gated first sample whatever the client sent; else the client's, else ours."""
        if drawn == 0 and self._gated and self.params.greedy_first:
            return 0.0
        client = req.sampling.get("temperature")
        return self.params.temperature if client is None else float(client)


REGISTRATION = Registration(
    AdaptiveBonParams,
    AdaptiveBonPolicy,
    Facts(
        worst_case=worst_case.adaptive_bon,
        text_prompts=True,
        votes=True,
        tool_votes=True,
        shapes=frozenset({"closed"}),
    ),
)
