"""``speculative``: the small tier drafts each reasoning step, the large tier judges it.

SpecReason (Pan et al. 2025): a step is a stretch of the assistant message up to a blank line
or ``max_step_tokens``. The draft tier continues the assistant message (the trace so far,
``continue_final_message``), the judge tier rates the draft 0-9 in one token
(``policies.judge``), and a draft scoring below ``accept_threshold`` is thrown away and the judge
tier writes that step itself. Text moves between tiers as text, so the tiers may use different
tokenizers. The chain stops at a final answer in the trace, at the end of text, at a repeated
step, at ``max_steps`` steps, or when the settled steps have spent the request's ``max_tokens``.

Usage kinds: ``draft`` (every draft, accepted or not) on the draft tier, ``judge`` and ``sample``
(steps the judge tier rewrote) on the judge tier. ``stream`` emits each step once it is settled.
The two tiers come from the config (``policies.tiers``: named, else cheapest drafts and dearest
judges); on a one-tier config that tier does both, which checks the mechanics, not a speedup.

On a reasoning tier (a thinking budget above 0) the steps are the thinking: each continues the
open thinking (the profile's opening, then the settled steps), within the thinking budget; the
worker's parser labels them ``reasoning`` and they stream as ``delta.reasoning``. When the
chain stops, the judge tier answers from the closed thinking with the profile's answer prompt
(as budget forcing does), within the room ``max_tokens`` leaves for the answer; that call is
ledgered ``sample`` as answer tokens, the steps as reasoning tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from core.backend import Backend, Choice, Delta
from core.errors import ContractReached, UpstreamError
from core.profile import Thinking
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from core.tracing import subcall
from core.usage import TokenUsage, UsageLedger
from policies import worst_case
from policies.answers import cluster_key, extract_answer
from policies.base import Registration
from policies.facts import Facts
from policies.judge import choice_score, judge_body
from policies.params import Budget, PolicyParams, TierRole
from policies.thinking import as_answer, closing_prefix, continuation, thinking_of, token_limits
from policies.tiers import resolved_tier

BLANK_LINE = "\n\n"
# Stop reasons that mean the answer was cut short rather than finished.
_TRUNCATED = frozenset({"max_tokens", "max_steps", "budget", "deadline"})
# Fields of the client's request that would break step-by-step continuation if forwarded.
_DROPPED = (
    "n",
    "logprobs",
    "top_logprobs",
    "include_stop_str_in_output",
    "echo",
    "stream",
    "stream_options",
    "max_completion_tokens",
    "min_tokens",
)


class SpeculativeParams(PolicyParams):
    """Speculative reasoning: the small tier drafts steps, the large tier judges them."""

    name: Literal["speculative"] = "speculative"
    # None: the cheapest / dearest configured tier (``policies.tiers``).
    draft_tier: Annotated[str | None, TierRole("cheapest")] = None
    judge_tier: Annotated[str | None, TierRole("dearest")] = None
    max_step_tokens: int = Field(64, ge=4, le=2048)
    accept_threshold: float = Field(7.0, ge=0.0, le=9.0)
    score: Literal["expected", "top"] = "expected"
    max_steps: Annotated[int, Budget("max_steps")] = Field(24, ge=1, le=256)


@dataclass(frozen=True)
class Step:
    """One generated step; ``ended`` is blank_line, length, eos or stop_sequence."""

    text: str
    completion_tokens: int
    ended: str


def step_ending(choice: Choice, client_stops: frozenset[str]) -> str:
    """How a continuation ended, from vLLM's ``finish_reason`` and ``stop_reason``.

    vLLM sets ``stop_reason`` to the matched stop string (or stop token id) and leaves it None
    when the model emitted its end-of-sequence token.
    """
    if choice.finish_reason == "length":
        return "length"
    stop_reason = choice.raw.get("stop_reason")
    if stop_reason == BLANK_LINE and BLANK_LINE not in client_stops:
        return "blank_line"
    if stop_reason is None or choice.finish_reason != "stop":
        return "eos"
    return "stop_sequence"


def client_stop_strings(req: GenRequest) -> frozenset[str]:
    stop = req.sampling.get("stop")
    if isinstance(stop, str):
        return frozenset({stop})
    return frozenset(str(s) for s in stop or ())


@dataclass
class Trace:
    """The mutable state of one request's chain: settled text, counters, spent usage."""

    req: GenRequest
    params: SpeculativeParams
    thinking: Thinking | None = None  # on a reasoning tier the steps are the thinking
    think_limit: int = 0  # its budget, as max_tokens leaves it (``token_limits``)
    answer_room: int = 0  # the answer's max_tokens after the thinking
    ledger: UsageLedger = field(default_factory=UsageLedger)
    text: str = ""
    separator: str = ""  # joins the next step to ``text``: a blank line, or nothing after a cut
    last_key: str | None = None
    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    rejected: int = 0
    spent: int = 0  # completion tokens of the settled steps, against req.max_tokens
    scores: list[float | None] = field(default_factory=list)
    stop_reason: str | None = None

    @property
    def prefix(self) -> str:
        """The assistant message the next step continues (inside the open thinking)."""
        opening = f"{self.thinking.start}\n" if self.thinking is not None else ""
        return opening + self.text + self.separator

    def step_limit(self) -> int:
        budget = self.think_limit if self.thinking is not None else self.req.max_tokens
        cap = self.params.max_step_tokens
        return cap if budget is None else min(cap, budget - self.spent)

    def repeats(self, step: Step) -> bool:
        return self.last_key is not None and cluster_key(step.text) == self.last_key

    def commit(self, step: Step) -> str:
        """Append a settled step; returns the text it adds to the answer."""
        added = (self.separator if self.text else "") + step.text
        self.text += added
        self.separator = BLANK_LINE if step.ended == "blank_line" else ""
        self.last_key = cluster_key(step.text)
        self.steps += 1
        self.spent += step.completion_tokens
        return added

    def stop_after(self, step: Step) -> str | None:
        if extract_answer(self.text, "answer_is") or extract_answer(self.text, "boxed"):
            return "answer"
        if step.ended in ("eos", "stop_sequence"):
            return step.ended
        if self.steps >= self.params.max_steps:
            return "max_steps"
        return "max_tokens" if self.step_limit() <= 0 else None

    @property
    def finish_reason(self) -> str:
        return "length" if self.stop_reason in _TRUNCATED else "stop"

    def report(self) -> dict[str, Any]:
        per_tier: dict[str, dict[str, int]] = {}
        for _kind, tier, usage in self.ledger.items():
            spent = per_tier.setdefault(tier, {"prompt_tokens": 0, "completion_tokens": 0})
            spent["prompt_tokens"] += usage.prompt_tokens
            spent["completion_tokens"] += usage.completion_tokens
        rate = self.accepted / self.drafted if self.drafted else 0.0
        return {
            "steps": self.steps,
            "steps_drafted": self.drafted,
            "steps_accepted": self.accepted,
            "steps_rejected": self.rejected,
            "acceptance_rate": round(rate, 4),
            "stop_reason": self.stop_reason,
            "judge_scores": [None if s is None else round(s, 3) for s in self.scores],
            "draft_tier": self.params.draft_tier,
            "judge_tier": self.params.judge_tier,
            "tokens_by_tier": per_tier,
        }

    def answer_text(self, answer: Step) -> str:
        """What the client reads after a closed thinking: the answer prompt, then the answer."""
        assert self.thinking is not None
        return self.thinking.answer_prompt.lstrip() + answer.text

    def result(self, answer: Step | None = None) -> PolicyResult:
        report = self.report()
        if answer is None:
            choice = ResultChoice(index=0, text=self.text, finish_reason=self.finish_reason)
        else:  # the steps were the thinking; the answer followed it
            finish = "length" if answer.ended == "length" else "stop"
            choice = ResultChoice(0, self.answer_text(answer), finish, reasoning=self.text)
            # Every token thought, as ``usage`` bills it (drafts the judge rejected and their
            # rewrites too); the budget bounds the kept trace, ``trace_thinking_tokens``.
            thought = self.ledger.total.reasoning_tokens
            report.update(
                thinking_tokens=thought, trace_thinking_tokens=self.spent, budget_forced=True
            )
        return PolicyResult(choices=(choice,), usage=self.ledger, report=report)


class SpeculativePolicy:
    name: ClassVar[str] = "speculative"

    def __init__(self, params: SpeculativeParams) -> None:
        self.params = params
        self.draft_tier = resolved_tier(params, "draft_tier")
        self.judge_tier = resolved_tier(params, "judge_tier")

    def _trace(self, req: GenRequest, decision: Decision) -> Trace:
        thinking = thinking_of(decision)
        if thinking is None or decision.thinking is None:
            return Trace(req, self.params)
        limit, room = token_limits(decision.thinking, req.max_tokens)
        return Trace(req, self.params, thinking, limit, room)

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult:
        trace = self._trace(req, decision)
        async for _added in self._settled_steps(trace, backend):
            pass
        answer = await self._answered(trace, backend) if trace.thinking is not None else None
        return trace.result(answer)

    async def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncIterator[Delta | PolicyResult]:
        trace = self._trace(req, decision)
        async for added in self._settled_steps(trace, backend):
            if trace.thinking is None:
                yield Delta(index=0, text=added)
            else:
                yield Delta(index=0, reasoning=added)
        if trace.thinking is None:
            yield Delta(index=0, finish_reason=trace.finish_reason)
            yield trace.result()
            return
        answer = await self._answered(trace, backend)
        result = trace.result(answer)
        yield Delta(index=0, text=result.choices[0].text)
        yield Delta(index=0, finish_reason=result.choices[0].finish_reason)
        yield result

    async def _settled_steps(self, trace: Trace, backend: Backend) -> AsyncIterator[str]:
        """Yield the text each settled step adds, until ``trace.stop_reason`` is set."""
        trace.stop_reason = "max_tokens" if trace.step_limit() <= 0 else None
        while trace.stop_reason is None:
            try:
                step = await self._settle(trace, backend)
            except ContractReached as stop:  # the compute contract: the settled steps answer
                if not trace.text:
                    raise
                trace.stop_reason = stop.reason
                return
            if step is None:
                return
            yield trace.commit(step)
            trace.stop_reason = trace.stop_after(step)

    async def _settle(self, trace: Trace, backend: Backend) -> Step | None:
        """Draft, judge, and rewrite if rejected; None (with a stop reason) ends the chain."""
        draft = await self._continue(trace, backend, self.draft_tier, "draft")
        if draft.ended == "eos" and not draft.text.strip():
            trace.stop_reason = "eos"
            return None
        if trace.repeats(draft):
            trace.stop_reason = "repeated_step"
            return None
        trace.drafted += 1
        if draft.text.strip() and await self._accepts(trace, backend, draft):
            trace.accepted += 1
            return draft
        trace.rejected += 1
        step = await self._continue(trace, backend, self.judge_tier, "sample")
        if trace.repeats(step):
            trace.stop_reason = "repeated_step"
            return None
        if not step.text.strip():
            trace.stop_reason = "eos" if step.ended == "eos" else "empty_step"
            return None
        return step

    async def _continue(self, trace: Trace, backend: Backend, tier: str, kind: str) -> Step:
        """One step on ``tier``: continue the assistant message up to a blank line."""
        req = trace.req
        stops = client_stop_strings(req)
        assistant: Mapping[str, Any] = {"role": "assistant", "content": trace.prefix}
        body = req.body(
            messages=[dict(m) for m in (*req.messages, assistant)],
            continue_final_message=True,
            add_generation_prompt=False,
            max_tokens=trace.step_limit(),
            stop=[BLANK_LINE, *sorted(stops - {BLANK_LINE})],
            **dict.fromkeys(_DROPPED),
        )
        with subcall(kind):
            completion = await backend.chat(tier, body, affinity=req.request_id)
        used = completion.usage
        if trace.thinking is not None:  # a step of the open thinking: all of it thought
            used = TokenUsage(used.prompt_tokens, used.completion_tokens, used.completion_tokens)
        trace.ledger.add(kind, tier, used)
        if not completion.choices:
            raise UpstreamError(f"tier {tier!r} returned no choices for a reasoning step")
        choice = completion.choices[0]
        # Inside the thinking the worker's parser labels the continuation reasoning.
        text = choice.reasoning + choice.text
        return Step(text, completion.usage.completion_tokens, step_ending(choice, stops))

    async def _answered(self, trace: Trace, backend: Backend) -> Step:
        """The answer after the thinking; when the contract allows no answer call, the answer
        the thinking itself states, else the contract's error."""
        try:
            return await self._answer(trace, backend)
        except ContractReached as stop:
            stated = extract_answer(trace.text, "auto")
            if stated is None:
                raise
            trace.stop_reason = trace.stop_reason or stop.reason
            return Step(stated, 0, "length")

    async def _answer(self, trace: Trace, backend: Backend) -> Step:
        """Close the thinking the steps wrote and let the judge tier answer from it, with the
        profile's answer prompt (as budget forcing does), within the room left for answers."""
        assert trace.thinking is not None
        req, tier = trace.req, self.judge_tier
        prefix = closing_prefix(trace.thinking, trace.text, "", forced=True)
        body = continuation(req.body(**dict.fromkeys(_DROPPED)), prefix, trace.answer_room)
        with subcall("sample"):
            completion = await backend.chat(tier, body, affinity=req.request_id)
        trace.ledger.add("sample", tier, as_answer(completion.usage))
        if not completion.choices:
            raise UpstreamError(f"tier {tier!r} returned no choices for the answer")
        choice = completion.choices[0]
        ended = step_ending(choice, client_stop_strings(req))
        return Step(choice.reasoning + choice.text, completion.usage.completion_tokens, ended)

    async def _accepts(self, trace: Trace, backend: Backend, draft: Step) -> bool:
        tier = self.judge_tier
        body = judge_body(trace.req.messages, trace.text, draft.text)
        with subcall("judge"):
            completion = await backend.chat(tier, body, affinity=trace.req.request_id)
        trace.ledger.add("judge", tier, completion.usage)
        choices = completion.choices
        score = choice_score(choices[0].raw, self.params.score) if choices else None
        trace.scores.append(score)
        return score is not None and score >= self.params.accept_threshold


REGISTRATION = Registration(
    SpeculativeParams,
    SpeculativePolicy,
    Facts(
        worst_case=worst_case.speculative,
        one_answer=True,
        logprobs=False,
        shed_under_load=True,
        needs=frozenset({"continue_final_message"}),
    ),
)
