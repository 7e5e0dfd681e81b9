"""Thinking budgets that hold: ``ThinkingBackend``, a ``Backend`` that budgets every call.

On a reasoning tier each generation call of a policy goes through it (``policies.budgeted``
wraps every policy): the router's ``ThinkingPlan`` decides how the budget is held.

- budget 0 on a family that can switch thinking off: the profile's ``off`` chat_template_kwargs;
- ``budget_mechanism: vllm``: the worker holds the budget (``thinking_token_budget``);
- ``budget_mechanism: forced`` (budget forcing): the first call gets ``max_tokens`` = the
  thinking budget, so the worker itself stops the thinking at exactly that many tokens. If the
  model has not answered by then, the gateway closes the thinking and continues on the cached
  prefix (``continue_final_message``): the thinking, the closing delimiter and the profile's
  answer prompt. The worker's reasoning parser sees only generated tokens, so it labels that
  continuation ``reasoning``; the gateway labels it the answer (``content``) and its tokens
  are not counted as reasoning. The answer is at least one token (``min_tokens``).

A client ``max_tokens`` bounds both calls together; when thinking would take all of it, the
thinking gets what is left after a reserve for the answer (``token_limits``). Calls that
continue a message (a policy's probes, drafted steps) are the policy's own business and pass
through unchanged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from core.backend import Backend, Choice, Completion, Delta, close_now
from core.profile import Thinking, ThinkingPlan
from core.request import Decision
from core.usage import TokenUsage


def thinking_of(decision: Decision) -> Thinking | None:
    """The profile's thinking when the request thinks (a reasoning tier, a budget above 0):
    what a policy that drives the thinking itself (convergence, speculative) needs."""
    plan = decision.thinking
    return plan.thinking if plan is not None and plan.budget > 0 else None


def token_limits(plan: ThinkingPlan, max_tokens: int | None) -> tuple[int, int]:
    """(thinking tokens of the first call, answer tokens after it) for one sample."""
    answer = plan.thinking.answer_tokens
    if max_tokens is None:
        return plan.budget, answer
    reserve = min(answer, max(max_tokens // 2, 1))
    thinking = max(min(plan.budget, max_tokens - reserve), 0)
    return thinking, max(max_tokens - thinking, 1)


def closing_prefix(thinking: Thinking, reasoning: str, content: str, forced: bool) -> str:
    """The assistant message the answer is continued from: the thinking so far, closed, then
    the answer prompt (forced) or the answer the model had begun."""
    head = f"{thinking.start}\n{reasoning.lstrip(chr(10))}{thinking.end}"
    return head + (thinking.answer_prompt if forced else content)


def continuation(body: Mapping[str, Any], prefix: str, max_tokens: int) -> dict[str, Any]:
    """The body that continues ``prefix`` as the assistant's message for one sample."""
    out = {k: v for k, v in body.items() if k not in ("n", "thinking_token_budget")}
    out["messages"] = [*body["messages"], {"role": "assistant", "content": prefix}]
    out.update(
        continue_final_message=True,
        add_generation_prompt=False,
        max_tokens=max_tokens,
        min_tokens=1,
    )
    return out


def thinking_call(body: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """The body of a forced sample's thinking call: at most ``limit`` tokens (a client's
    ``min_tokens`` above that would be a 400 from the worker)."""
    out = {**body, "max_tokens": limit}
    if isinstance(body.get("min_tokens"), int):
        out["min_tokens"] = min(body["min_tokens"], limit)
    return out


def continues(body: Mapping[str, Any]) -> bool:
    return bool(body.get("continue_final_message")) or "messages" not in body


def as_answer(usage: TokenUsage) -> TokenUsage:
    """A forced continuation's usage: its tokens are answer, whatever the parser said."""
    return TokenUsage(usage.prompt_tokens, usage.completion_tokens, 0)


class ThinkingBackend:
    """``Backend`` that holds ``plan``'s thinking budget on every call a policy makes, and
    keeps the tally the ``ttc`` report shows (``report``)."""

    def __init__(self, inner: Backend, plan: ThinkingPlan) -> None:
        self.inner = inner
        self.plan = plan
        self.thinking_tokens = 0
        self.forced = 0

    def report(self) -> dict[str, Any]:
        return {"thinking_tokens": self.thinking_tokens, "budget_forced": self.forced > 0}

    @property
    def _forcing(self) -> bool:
        return self.plan.forced and not (self.plan.budget == 0 and self.plan.thinking.off)

    def _shaped(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The body of a call the worker budgets itself (thinking off, or the vLLM budget)."""
        thinking = self.plan.thinking
        if self.plan.budget == 0 and thinking.off:
            kwargs = {**(body.get("chat_template_kwargs") or {}), **thinking.off}
            return {**body, "chat_template_kwargs": kwargs}
        limit, _ = token_limits(self.plan, body.get("max_tokens"))
        return {**body, "thinking_token_budget": limit}

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        if continues(body):
            return await self.inner.chat(tier, body, affinity=affinity)
        if not self._forcing:
            shaped = self._shaped(body)
            completion = labelled(await self.inner.chat(tier, shaped, affinity=affinity))
            self.thinking_tokens += completion.usage.reasoning_tokens
            return completion
        limit, room = token_limits(self.plan, body.get("max_tokens"))
        first = labelled(await self._think(tier, body, limit, affinity))
        self.thinking_tokens += first.usage.reasoning_tokens
        answers = [
            asyncio.ensure_future(self._answer(tier, body, c, room, affinity))
            for c in first.choices
        ]
        try:
            finished = await asyncio.gather(*answers)
        except BaseException:  # one failed or we were cancelled: none is left running unbilled
            for answer in answers:
                answer.cancel()
            await asyncio.gather(*answers, return_exceptions=True)
            raise
        usage = sum((u for _, u in finished), first.usage)
        return Completion(tuple(c for c, _ in finished), usage, first.model)

    async def _think(
        self, tier: str, body: dict[str, Any], limit: int, affinity: str | None
    ) -> Completion:
        if limit > 0:
            return await self.inner.chat(tier, thinking_call(body, limit), affinity=affinity)
        n = int(body.get("n") or 1)  # budget 0: no thinking call at all
        empty = tuple(Choice(index=i, text="", finish_reason="length") for i in range(n))
        return Completion(empty, TokenUsage(), str(body.get("model", "")))

    async def _answer(
        self, tier: str, body: dict[str, Any], choice: Choice, room: int, affinity: str | None
    ) -> tuple[Choice, TokenUsage]:
        """``choice`` as it is if the model answered (or called a tool), else with the answer
        continued."""
        if choice.finish_reason != "length" and (choice.text.strip() or _calls_of(choice)):
            return choice, TokenUsage()
        forced = not choice.text.strip()
        self.forced += int(forced)
        prefix = closing_prefix(self.plan.thinking, choice.reasoning, choice.text, forced)
        seed = body.get("seed")
        extra = {"seed": seed + choice.index} if isinstance(seed, int) else {}
        done = await self.inner.chat(
            tier, {**continuation(body, prefix, room), **extra}, affinity=affinity
        )
        answer = done.choices[0]
        lead = self.plan.thinking.answer_prompt.lstrip() if forced else choice.text
        text = lead + answer.reasoning + answer.text
        raw = {"message": {"role": "assistant", "content": text, "reasoning": choice.reasoning}}
        return Choice(
            index=choice.index,
            text=text,
            finish_reason=answer.finish_reason,
            reasoning=choice.reasoning,
            raw=raw,
        ), as_answer(done.usage)

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncGenerator[Delta, None]:
        if continues(body):
            source = self.inner.stream_chat(tier, body, affinity=affinity)
        elif not self._forcing:
            shaped = self._shaped(body)
            source = self._counted(self.inner.stream_chat(tier, shaped, affinity=affinity))
        elif int(body.get("n") or 1) > 1:
            source = _replayed(self.chat(tier, body, affinity=affinity))
        else:
            source = ForcedStream(self, tier, body, affinity).deltas()
        try:
            async for delta in source:
                yield delta
        finally:
            await close_now(source)

    async def _counted(self, deltas: AsyncIterator[Delta]) -> AsyncGenerator[Delta, None]:
        last = 0  # the latest usage's count: a running usage is cumulative, never summed
        pieces = 0  # thinking deltas: one token each, for a worker that does not count them
        try:
            async for delta in deltas:
                pieces += bool(delta.reasoning)
                if delta.usage is not None:
                    used = delta.usage
                    if not used.reasoning_tokens and pieces:
                        used = replace(used, reasoning_tokens=min(pieces, used.completion_tokens))
                        delta = replace(delta, usage=used)
                    last = used.reasoning_tokens
                yield delta
        finally:
            self.thinking_tokens += last
            await close_now(deltas)


class ForcedStream:
    """One streamed sample under budget forcing: the thinking as the worker streams it, then,
    if it did not answer, the answer prompt and the continuation as ``text``."""

    def __init__(
        self, owner: ThinkingBackend, tier: str, body: dict[str, Any], affinity: str | None
    ) -> None:
        self.owner, self.tier, self.body, self.affinity = owner, tier, body, affinity
        self.limit, self.room = token_limits(owner.plan, body.get("max_tokens"))
        self.reasoning: list[str] = []
        self.text: list[str] = []
        self.finish: str | None = "length"
        self.called = False  # the model called a tool within the budget: that is its answer
        self.usage = TokenUsage()
        # A caller that asked for the worker's running usage (``continuous_usage_stats``) reads
        # every usage delta as the total so far, so the thinking call's are passed on; any
        # other caller sums usage deltas and gets only the one total at the end.
        self.running = bool((body.get("stream_options") or {}).get("continuous_usage_stats"))

    async def deltas(self) -> AsyncGenerator[Delta, None]:
        thinking = self._thinking()
        try:
            if self.limit > 0:
                async for delta in thinking:
                    yield delta
        finally:  # a trace stopped while it thinks (convergence) has thought that much too
            await close_now(thinking)  # now: closing it cancels the trace upstream
            thought = self._thinking_tokens()
            self.usage = replace(self.usage, reasoning_tokens=thought)
            self.owner.thinking_tokens += thought
        answer = "".join(self.text)
        if self.finish != "length" and (answer.strip() or self.called):
            yield Delta(finish_reason=self.finish)
            yield Delta(usage=self.usage)
            return
        forced = not answer.strip()
        self.owner.forced += int(forced)
        if forced:
            yield Delta(text=self.owner.plan.thinking.answer_prompt.lstrip())
        prefix = closing_prefix(self.owner.plan.thinking, "".join(self.reasoning), answer, forced)
        answering = self._answer(prefix)
        try:
            async for delta in answering:
                yield delta
        finally:
            await close_now(answering)

    def _so_far(self, used: TokenUsage) -> TokenUsage:
        """A running usage of the thinking call with its thinking counted (the worker's 0)."""
        if used.reasoning_tokens:
            return used
        pieces = sum(1 for piece in self.reasoning if piece)
        return replace(used, reasoning_tokens=min(pieces, used.completion_tokens))

    def _thinking_tokens(self) -> int:
        """The worker's count when it sent one (vLLM 0.32 does not); else one token per
        thinking delta when the model went on to answer, and otherwise (it only thought, or
        was cut while thinking) every completion token so far."""
        pieces = sum(1 for piece in self.reasoning if piece)
        if self.usage.reasoning_tokens or not pieces:
            return self.usage.reasoning_tokens
        if "".join(self.text).strip():
            return pieces
        return min(max(self.usage.completion_tokens, pieces), self.limit)

    async def _thinking(self) -> AsyncGenerator[Delta, None]:
        body = thinking_call(self.body, self.limit)
        upstream = self.owner.inner.stream_chat(self.tier, body, affinity=self.affinity)
        try:
            async for delta in upstream:
                if delta.usage is not None:
                    self.usage = delta.usage
                    if self.running:  # the caller reads usage as cumulative: pass it on,
                        yield Delta(usage=self._so_far(delta.usage))  # its thinking counted
                    continue
                self.finish = delta.finish_reason or self.finish
                self.reasoning.append(delta.reasoning)
                self.text.append(delta.text)
                calls = bool((delta.raw.get("delta") or {}).get("tool_calls"))
                self.called = self.called or calls
                if delta.reasoning or delta.text or calls:
                    yield Delta(index=0, text=delta.text, reasoning=delta.reasoning, raw=delta.raw)
        finally:
            await close_now(upstream)

    async def _answer(self, prefix: str) -> AsyncGenerator[Delta, None]:
        body = continuation(self.body, prefix, self.room)
        upstream = self.owner.inner.stream_chat(self.tier, body, affinity=self.affinity)
        finish, used = "stop", TokenUsage()
        try:
            async for delta in upstream:
                if delta.usage is not None:
                    used = as_answer(delta.usage)
                    continue
                finish = delta.finish_reason or finish
                if delta.reasoning or delta.text:
                    yield Delta(index=0, text=delta.reasoning + delta.text)
        finally:
            await close_now(upstream)
        yield Delta(finish_reason=finish)
        yield Delta(usage=self.usage + used)


def labelled(done: Completion) -> Completion:
    """``done`` with its thinking counted in its usage. vLLM (0.32) reports
    ``reasoning_tokens`` 0 even where its parser split the thinking off, so the gateway counts
    it: every completion token of a call whose choices only thought, else the thinking's share
    of the characters generated."""
    used = done.usage
    if used.reasoning_tokens or not any(c.reasoning for c in done.choices):
        return done
    thought = sum(len(c.reasoning) for c in done.choices)
    said = sum(len(c.text) + len(_tool_calls_text(c)) for c in done.choices)
    reasoning = round(used.completion_tokens * thought / (thought + said))
    return replace(done, usage=replace(used, reasoning_tokens=reasoning))


def _tool_calls_text(choice: Choice) -> str:
    """The tool calls a choice made, as text: the parser moved them out of ``text``, but the
    model wrote them as tokens all the same."""
    calls = _calls_of(choice)
    return json.dumps(calls) if calls else ""


def _calls_of(choice: Choice) -> list[Any]:
    message = choice.raw.get("message")
    calls = message.get("tool_calls") if isinstance(message, Mapping) else None
    return list(calls) if isinstance(calls, list) else []


async def _replayed(completion: Any) -> AsyncGenerator[Delta, None]:
    """A whole completion as deltas: the thinking, the answer, the finish, the usage."""
    done: Completion = await completion
    for choice in done.choices:
        if choice.reasoning:
            yield Delta(index=choice.index, reasoning=choice.reasoning)
        yield Delta(index=choice.index, text=choice.text)
        if calls := _calls_of(choice):  # whole, as the first delta of a streamed call is
            pieces = [{"index": i, **call} for i, call in enumerate(calls)]
            yield Delta(index=choice.index, raw={"delta": {"tool_calls": pieces}})
        yield Delta(index=choice.index, finish_reason=choice.finish_reason)
    yield Delta(usage=done.usage)
