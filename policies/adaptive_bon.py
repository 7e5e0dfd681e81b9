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

After each round the extracted answers (``params.answer_mode``) are tallied and sampling stops
with one of these ``stop_reason`` values:

- ``confident_first_sample``: the gate (``single_sample_confidence`` set) made the first round
  one sample (greedy when ``greedy_first``, whatever the client's temperature), and the
  geometric-mean probability of its answer's tokens cleared the gate;
- ``confident`` / ``window``: the Beta rule / the window rule of ``policies.voting.should_stop``
  fired; the Beta rule's required confidence is ``adjust_confidence(confidence, difficulty,
  difficulty_prior)``, so the router's difficulty tightens or loosens it;
- ``decided``: the leader is ahead by more votes than samples remain, so no further sample
  could change the winner;
- ``greedy``: the client sent temperature 0, so every sample would be the same greedy one:
  one sample, no vote (vLLM also refuses ``n`` > 1 at temperature 0);
- ``max_samples``: the budget ran out. Every other reason is an early stop;
- ``budget`` / ``deadline``: the request's compute contract (``core.contract``) refused the
  next round or cut the one in flight; the samples already drawn vote (none: the error).

Selection: plurality of the extracted answers, ties broken by mean token log-probability
(votes weighted by probability when ``weighted``); the returned text is the leader's most
confident sample. With no extractable answer anywhere, samples cluster by ``cluster_key``; when
no two agree, the most confident sample wins. A client asking ``n`` > 1 gets the most confident
sample of each of the top ``n`` distinct answers, ordered by votes: fewer choices when fewer
distinct answers were drawn. ``min_samples == max_samples`` with the gate off is one round:
plain fixed best-of-N majority vote, the baseline. A request deadline cancels the round in
flight (the service's timeout); nothing here catches the cancellation.

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
from core.progress import Progress, short_leader
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from core.usage import TokenUsage, UsageLedger
from policies.base import PolicyEvent, Registration, answer_deltas, cancel_now, drain_while
from policies.draws import (
    Draw,
    answer_confidence,
    first_sample_confidence,
    leader_is_decided,
    rank_samples,
    request_schemas,
)
from policies.meaning import AnswerContext
from policies.params import AnswerMode, Budget, Capped, PolicyParams
from policies.pruning import calibrated_threshold, draw_streamed
from policies.thinking import thinking_of
from policies.tool_votes import sample_tool_calls
from policies.voting import (
    adjust_confidence,
    reported_votes,
    should_stop,
    tally,
)


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


# 5 answers: enough to see how the votes split without bloating every response (the no-answer
# bucket, ``policies.voting.NO_ANSWER``, comes on top).
REPORTED_VOTES = 5


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
        ledger = UsageLedger()
        draw = Draw(context=AnswerContext.of(req.question), schemas=request_schemas(req))
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
            draw.add(choices, size, p.answer_mode)
            if cut is not None and not draw.samples:
                raise cut  # the contract cut the first round: nothing to answer with
            if cut is not None:
                reason = cut.reason
            else:
                reason = "greedy" if greedy else self._stop_reason(draw, required)
            yield self._progress(decision.tier, draw, ledger, reason)
        if not draw.samples:
            raise UpstreamError("the worker returned no samples", code="no_samples")
        yield self._result(req, draw, ledger, reason, required)

    def _progress(self, tier: str, draw: Draw, ledger: UsageLedger, reason: str | None) -> Progress:
        current = tally(draw.votes(), weighted=self.params.weighted)
        return Progress(
            policy=self.name,
            tier=tier,
            round=draw.rounds,
            samples=len(draw.samples),
            completion_tokens=ledger.total.completion_tokens,
            leader=short_leader(current.leader),
            votes=current.leader_count if current.leader is not None else 0,
            confidence=answer_confidence(draw, current, reason),
            stop_reason=reason,
        )

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
        p = self.params
        if draw.rounds == 0 and self._gated:
            return 1
        wanted = max(self._min_samples - draw.requested, 0) or p.step
        return min(wanted, p.max_samples - draw.requested)

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

    def _stop_reason(self, draw: Draw, required: float) -> str | None:
        p = self.params
        if draw.requested >= p.max_samples:
            return "max_samples"
        gate = p.single_sample_confidence
        if (
            self._gated
            and gate is not None
            and draw.rounds == 1
            and (first_sample_confidence(draw) or 0) >= gate
        ):
            return "confident_first_sample"
        current = tally(draw.votes(), weighted=p.weighted)
        decision = should_stop(
            current,
            draw.answers,
            rule=p.stopping,
            confidence=required,
            window=p.window,
            min_samples=self._min_samples,
            max_samples=p.max_samples,
        )
        if decision.stop:
            return decision.reason
        remaining = p.max_samples - draw.requested
        settled = leader_is_decided(current, remaining, p.weighted)
        return "decided" if settled and draw.requested >= self._min_samples else None

    def _result(
        self, req: GenRequest, draw: Draw, ledger: UsageLedger, reason: str, required: float
    ) -> PolicyResult:
        ranked, selection = rank_samples(draw, self.params.weighted)
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
            for index, position in enumerate(ranked[: req.n])
        )
        report = self._report(draw, ledger, reason, required)
        report["selection"] = selection
        return PolicyResult(choices=choices, usage=ledger, report=report)

    def _report(
        self, draw: Draw, ledger: UsageLedger, reason: str, required: float
    ) -> dict[str, Any]:
        p = self.params
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
            "required_confidence": round(required, 4),
            "tokens_saved": round((p.max_samples - samples) * per_sample) if early else 0,
            "max_samples": p.max_samples,
        }
        if p.prune:
            threshold = None if draw.threshold is None else round(draw.threshold, 4)
            report.update(pruned=draw.pruned, prune_threshold=threshold)
        if self._gated:
            gate_value = first_sample_confidence(draw)
            report["first_sample_confidence"] = None if gate_value is None else round(gate_value, 4)
        return report


REGISTRATION = Registration(AdaptiveBonParams, AdaptiveBonPolicy)
