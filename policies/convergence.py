"""``convergence``: one chain of thought, stopped as soon as its answer has converged.

The chain streams from ``decision.tier``. Every ``probe_every`` chain tokens, and at each step
boundary (a blank line), a probe (``policies.probing``) asks the model for its answer at that
point, concurrently: the chain is never paused. When the last ``agree`` probes, in chain order,
state the same non-empty answer and none of their texts hedges, the chain is cancelled upstream
(its stream is closed, which closes the HTTP connection and makes vLLM abort the request) and
the answer is the chain so far followed by the line ``FINAL_ANSWER_PREFIX + <probe's answer>``
after a blank line, e.g. "...so it is Paris\\n\\nFinal answer: Paris." (the answer as the probe
wrote it: its first non-blank line). If the chain ends first, it is returned as it is.

It helps on reasoning prompts ("think step by step"), whose answer is often settled long before
the chain ends; on any other prompt it still works, and costs only the probes.

On a reasoning tier (``Decision.thinking`` with a budget above 0) the chain is the model's
thinking, held within its budget by ``policies.thinking``. It is probed while it thinks: a
probe continues the thinking so far, closed, followed by the profile's answer prompt ("<think>
...</think> The final answer is"), on the cached prefix; the worker labels that continuation
``reasoning``, the policy reads it as the answer and ledgers its tokens as answer tokens. Once
probes agree the trace is cancelled upstream and the answer is the answer prompt followed by the
probe's first line; the thinking streams as ``delta.reasoning`` and is the message's
``reasoning``. Once the answer has begun (the model closed its thinking, or the budget forced
it) nothing is probed. ``reasoning_tokens_saved`` is the thinking budget (as ``max_tokens``
leaves it) minus the thinking generated when the trace was stopped early, else 0.

Token accounting: one streamed delta counts as one token (vLLM streams one token per delta);
that count schedules probes. Usage comes from the upstream's running usage when it sends it
(``continuous_usage_stats``); a chain cancelled before any usage arrived is estimated (prompt:
``core.contract.prompt_estimate``, what the meter bills too; completion: deltas) and the report
says ``usage_estimated``. Every finished probe's prompt and completion tokens are ledger kind
"probe"; a probe cancelled in flight reports nothing: it is counted in ``probes_cancelled``,
and the meter bills its prompt (kind "dropped" in ``usage``, ``server.settlement``).
``tokens_saved`` is the budget (the request's ``max_tokens``, else ``default_budget``, which
is not sent upstream) minus the chain tokens generated when the chain was stopped early, else
0; ``probe_tokens`` (prompt plus completion) is what the probes cost against it. ``n`` is
ignored: the policy runs one chain.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from core.backend import Backend, Delta, close_now
from core.contract import prompt_estimate
from core.errors import ContractReached
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from core.usage import TokenUsage, UsageLedger
from policies import worst_case
from policies.answers import extract_answer
from policies.base import Registration
from policies.facts import Facts
from policies.params import Budget
from policies.probing import AnswerProbe, ProbeParams, ProbeRunner, converged, first_line
from policies.thinking import thinking_of, token_limits

FINAL_ANSWER_PREFIX = "Final answer: "
STEP_BOUNDARY = "\n\n"

Event = Delta | PolicyResult


class ConvergenceParams(ProbeParams):
    """One chain of thought, stopped once probes of its answer agree."""

    name: Literal["convergence"] = "convergence"
    # The budget tokens_saved is measured against when the request sets no max_tokens (not sent
    # upstream: a long prompt plus a default max_tokens could exceed the model's context).
    default_budget: Annotated[int, Budget(None)] = Field(1024, ge=16, le=131072)


@dataclass
class Chain:
    """The main chain as streamed so far, and when its next probe is due."""

    parts: list[str] = field(default_factory=list)
    thought: list[str] = field(default_factory=list)  # the thinking (reasoning tiers)
    deltas: int = 0  # deltas of thinking or text: about one token each
    usage: TokenUsage | None = None  # the upstream's latest (cumulative) usage, if any
    finish_reason: str | None = None
    logprobs: list[Any] = field(default_factory=list)
    probed_at: int = 0  # deltas when the last probe was launched
    at_boundary: bool = False  # a step boundary was streamed since the last probe
    _tail: str = ""

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def thinking(self) -> str:
        return "".join(self.thought)

    def add(self, delta: Delta) -> None:
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        piece = delta.reasoning + delta.text
        if not piece:
            return
        self.thought.append(delta.reasoning)
        self.parts.append(delta.text)
        self.deltas += 1
        self.at_boundary = self.at_boundary or STEP_BOUNDARY in self._tail + piece
        self._tail = piece[-1:]
        self.logprobs.extend((delta.raw.get("logprobs") or {}).get("content") or ())

    def probe_due(self, every: int) -> bool:
        fresh = self.deltas - self.probed_at
        return fresh > 0 and (fresh >= every or self.at_boundary)

    def probed(self) -> None:
        self.probed_at = self.deltas
        self.at_boundary = False


def stopped(chain: str, added: str, stop: str | list[str] | None) -> str:
    """``chain + added``, cut where the client's first ``stop`` string would have ended the
    answer (as the worker cuts a chain): the line the gateway adds obeys it too."""
    full = chain + added
    cut = len(full)
    for s in [stop] if isinstance(stop, str) else stop or []:
        if s and (at := full.find(s, max(0, len(chain) - len(s) + 1))) != -1:
            cut = min(cut, at)
    return full[:cut]


def final_line(chain: str, probe_text: str) -> str:
    """What follows the chain when it converged: a blank line, then the final answer."""
    newlines = len(chain) - len(chain.rstrip("\n"))
    return "\n" * max(0, 2 - newlines) + FINAL_ANSWER_PREFIX + first_line(probe_text)


def chain_usage(chain: Chain) -> TokenUsage | None:
    """The upstream's latest usage, which may lag the text by the delta just read."""
    if chain.usage is None:
        return None
    used = chain.usage
    return replace(used, completion_tokens=max(used.completion_tokens, chain.deltas))


def estimate_prompt_tokens(req: GenRequest) -> int:
    return prompt_estimate(req.body())


class ConvergencePolicy:
    name: ClassVar[str] = "convergence"

    def __init__(self, params: ConvergenceParams) -> None:
        self.params = params

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult:
        async with contextlib.aclosing(self._events(req, decision, backend)) as events:
            async for event in events:
                if isinstance(event, PolicyResult):
                    return event
        raise RuntimeError("the convergence stream ended without a result")

    def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncGenerator[Event, None]:
        """The chain's text deltas as they come; if it converges, the final answer line as the
        last delta (finish_reason "stop"); then the ``PolicyResult``."""
        return self._events(req, decision, backend)

    def budget(self, req: GenRequest) -> int:
        """What tokens_saved is measured against: the request's max_tokens, else a default."""
        return req.max_tokens or self.params.default_budget

    async def _events(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncGenerator[Event, None]:
        chain = Chain()
        thinking = thinking_of(decision)
        probes = ProbeRunner(self.params, req, decision.tier, backend, thinking)
        running_usage = {"include_usage": True, "continuous_usage_stats": True}
        body = req.body(n=None, stream_options=running_usage)
        upstream = backend.stream_chat(decision.tier, body, affinity=req.request_id)
        winner: AnswerProbe | None = None
        try:
            async for delta in upstream:
                chain.add(delta)
                if delta.text or delta.reasoning:
                    yield Delta(index=0, text=delta.text, reasoning=delta.reasoning, raw=delta.raw)
                if chain.finish_reason is not None:
                    continue  # finished by itself: only its usage is still to come
                winner = self._step(chain, probes, thinking is not None)
                if winner is not None:
                    break
        except ContractReached:  # the compute contract cut the chain: answer with it so far
            winner = last_answer(probes) if thinking is not None and not chain.text else None
            if not chain.text and winner is None:
                raise
            chain.finish_reason = chain.finish_reason or "length"
        finally:
            try:
                await close_now(upstream)
            finally:
                await probes.cancel_all()
        result = self._result(req, decision, chain, probes, winner)
        last = result.choices[0]
        closing = last.text[len(chain.text) :]
        yield Delta(index=0, text=closing, finish_reason=last.finish_reason)
        yield result

    def _step(self, chain: Chain, probes: ProbeRunner, thinks: bool) -> AnswerProbe | None:
        """Read finished probes; launch the next one when due and a slot is free. A thinking
        trace is probed while it thinks: once its answer has begun there is nothing to cut."""
        if thinks and chain.text.strip():
            return None
        probes.collect()
        winner = converged(probes.in_order(), self.params.agree)
        if winner is None and chain.probe_due(self.params.probe_every) and probes.can_launch:
            probes.launch(chain.thinking if thinks else chain.text, chain.deltas)
            chain.probed()
        return winner

    def _result(
        self,
        req: GenRequest,
        decision: Decision,
        chain: Chain,
        probes: ProbeRunner,
        winner: AnswerProbe | None,
    ) -> PolicyResult:
        text = chain.text
        thinking = thinking_of(decision)
        estimated = chain.usage is None
        used = chain_usage(chain) or TokenUsage(estimate_prompt_tokens(req), chain.deltas)
        if winner is not None and thinking is not None:  # stopped while thinking: all thought
            used = TokenUsage(used.prompt_tokens, used.completion_tokens, used.completion_tokens)
        ledger = UsageLedger()
        ledger.add("sample", decision.tier, used)
        for probe in probes.results.values():
            ledger.add("probe", decision.tier, probe.usage)
        if winner is None:
            choice = ResultChoice(0, text, chain.finish_reason or "stop")
        elif thinking is not None:  # the thinking closed; the answer is what the probe said
            answer = thinking.answer_prompt.lstrip() + first_line(winner.text)
            choice = ResultChoice(0, stopped(text, answer, req.sampling.get("stop")), "stop")
        else:
            line = final_line(text, winner.text)
            choice = ResultChoice(0, stopped(text, line, req.sampling.get("stop")), "stop")
        choice = replace(choice, reasoning=chain.thinking)
        if chain.logprobs:
            choice = replace(choice, logprobs={"content": chain.logprobs})
        report = self._report(req, chain, used, probes, winner, estimated)
        if thinking is not None and decision.thinking is not None:
            # What the trace could still have thought: its budget (as max_tokens leaves it).
            limit, _ = token_limits(decision.thinking, req.max_tokens)
            saved = max(0, limit - used.completion_tokens) if winner is not None else 0
            report = {**report, "reasoning_tokens_saved": saved}
        return PolicyResult(choices=(choice,), usage=ledger, report=report)

    def _report(
        self,
        req: GenRequest,
        chain: Chain,
        used: TokenUsage,
        probes: ProbeRunner,
        winner: AnswerProbe | None,
        estimated: bool,
    ) -> Mapping[str, Any]:
        chain_tokens = used.completion_tokens
        if winner is not None:
            stop_reason, answer = "converged", winner.answer
        else:
            stop_reason = "length" if chain.finish_reason == "length" else "completed"
            answer = extract_answer(chain.text, self.params.answer_mode)
        finished = probes.results.values()
        return {
            "samples": 1,
            "probes": probes.launched,
            "probes_cancelled": probes.cancelled,
            "probe_errors": sum(1 for p in finished if p.error is not None),
            "probe_tokens": sum(p.usage.total_tokens for p in finished),
            "early_stopped": winner is not None,
            "stop_reason": stop_reason,
            "answer": answer,
            "chain_tokens": chain_tokens,
            "budget": self.budget(req),
            "tokens_saved": max(0, self.budget(req) - chain_tokens) if winner else 0,
            "usage_estimated": estimated,
        }


def last_answer(probes: ProbeRunner) -> AnswerProbe | None:
    """The latest finished probe that stated an answer: the best a cut thinking trace has."""
    answered = [p for p in probes.in_order() if p.answer is not None]
    return answered[-1] if answered else None


REGISTRATION = Registration(
    ConvergenceParams,
    ConvergencePolicy,
    Facts(
        worst_case=worst_case.convergence,
        one_answer=True,
        needs=frozenset({"continue_final_message"}),
        shapes=frozenset({"closed"}),
    ),
)
