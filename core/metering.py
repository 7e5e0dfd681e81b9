"""What one request actually spent upstream, whatever becomes of it.

A policy reports its spend in ``PolicyResult.usage`` when it finishes. A request that fails
half-way, hits its deadline, or whose client goes away never gets that far, yet its finished
samples, probes and partial streams were generated and must still be billed. ``MeteredBackend``
wraps the pool for one request and adds up what every upstream call cost as it happens:

- a finished ``chat`` call: the usage the worker reported;
- a stream, however it ends (finished, failed, or closed by its consumer): the worker's latest
  usage when it sent one, otherwise one completion token per text delta (vLLM streams about one
  token per delta) and the prompt's estimate (``core.contract.prompt_estimate``, or the count
  an earlier call of the request reported, under a contract) once anything arrived;
- a ``chat`` call cancelled in flight (a probe no longer needed, a round cut by the deadline or
  a leaving client): its prompt, as above, which the worker had taken in; vLLM aborts it and
  says nothing of what it had generated.

``spent`` is the total and ``by_tier`` the same per tier: the lifecycle bills it when it is
more than a policy's ledger, and shows the difference in ``usage`` (``server.settlement``).

With a ``ContractMeter`` (``core.contract``) every sub-call is also admitted by the request's
compute contract before it starts (its ``max_tokens`` clamped to what is left), runs no later
than the contract's deadline, and a stream that spends past the contract is closed upstream:
each of those raises ``ContractReached``, the signal policies stop on. A stream that reported no
usage is then counted with its prompt (the contract's estimate) as well as its deltas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from core.backend import Backend, Completion, Delta, close_now
from core.calibration import PromptCalibration
from core.contract import ContractMeter, prompt_estimate
from core.errors import BudgetReached, ContractReached
from core.usage import TokenUsage

T = TypeVar("T")


@dataclass
class StreamProgress:
    started: bool = False  # output started (``workers.streams``)
    received: bool = False  # anything arrived: the worker has the prompt
    text_deltas: int = 0  # vLLM streams about one token per delta
    usage: TokenUsage | None = None  # the upstream's latest cumulative usage, if it sent one

    def note(self, delta: Delta) -> None:
        self.received = True
        if delta.text or delta.reasoning:
            self.text_deltas += 1
        if delta.usage is not None:
            self.usage = delta.usage

    def usage_so_far(self) -> TokenUsage:
        """Upstream usage when known (completion at least the deltas seen), else the estimate."""
        if self.usage is None:
            return TokenUsage(0, self.text_deltas)
        return TokenUsage(
            self.usage.prompt_tokens, max(self.usage.completion_tokens, self.text_deltas)
        )


class MeteredBackend:
    """``Backend`` for one request that keeps the running total of its upstream spend and,
    given a ``contract``, keeps every sub-call inside it."""

    def __init__(
        self,
        inner: Backend,
        contract: ContractMeter | None = None,
        calibration: PromptCalibration | None = None,
    ) -> None:
        self._inner = inner
        self.contract = contract
        self._calibration = calibration
        self.spent = TokenUsage()
        self.by_tier: dict[str, TokenUsage] = {}

    def _add(self, tier: str, usage: TokenUsage) -> None:
        self.spent += usage
        self.by_tier[tier] = self.by_tier.get(tier, TokenUsage()) + usage

    def _prompt(self, tier: str, body: Mapping[str, Any]) -> int:
        """A prompt no call reported (counted only on these rare paths: it reads it all)."""
        if self.contract is not None:
            return self.contract.known_prompt(body, tier)
        if self._calibration is not None:
            return self._calibration.count(tier, body)
        return prompt_estimate(body)

    def _observe(self, tier: str, body: Mapping[str, Any], usage: TokenUsage | None) -> None:
        if self._calibration is not None and usage is not None:
            self._calibration.observe(tier, body, usage.prompt_tokens)

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        if self.contract is None:
            try:
                completion = await self._inner.chat(tier, body, affinity=affinity)
            except asyncio.CancelledError:
                self._add(tier, TokenUsage(self._prompt(tier, body), 0))
                raise
            self._add(tier, completion.usage)
            self._observe(tier, body, completion.usage)
            return completion
        handle, body = self.contract.open(tier, body, reserve=True)
        usage = TokenUsage()  # failed: the worker ran nothing
        try:
            completion = await self._by_deadline(self._inner.chat(tier, body, affinity=affinity))
            usage = completion.usage
            self._add(tier, usage)
            self._observe(tier, body, usage)
            return completion
        except (asyncio.CancelledError, ContractReached):
            usage = TokenUsage(self._prompt(tier, body), 0)  # cut in flight: its prompt
            self._add(tier, usage)
            raise
        finally:
            self.contract.close(handle, body, usage)

    def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncGenerator[Delta, None]:
        if self.contract is None:
            return self._metered(tier, body, self._inner.stream_chat(tier, body, affinity=affinity))
        return self._contracted(self.contract, tier, body, affinity)

    async def _contracted(
        self, contract: ContractMeter, tier: str, body: dict[str, Any], affinity: str | None
    ) -> AsyncGenerator[Delta, None]:
        handle, body = contract.open(tier, body, reserve=False)
        seen = StreamProgress()
        deltas = self._inner.stream_chat(tier, body, affinity=affinity)
        try:
            while True:
                try:
                    delta = await self._by_deadline(anext(deltas))
                except StopAsyncIteration:
                    return
                seen.note(delta)
                yield delta
                known = seen.usage.prompt_tokens if seen.usage is not None else None
                if contract.progress(handle, seen.usage_so_far().completion_tokens, known):
                    raise BudgetReached("the compute contract was spent while this call streamed")
        finally:
            # Counted before the upstream is closed: closing awaits, and a cancellation that
            # lands there (the client left) must not lose what the worker generated.
            used = seen.usage_so_far()
            self._observe(tier, body, seen.usage)
            if seen.usage is None:
                used = TokenUsage(contract.known_prompt(body, tier), used.completion_tokens)
            self._add(tier, used)
            contract.close(handle, body, used)
            await close_now(deltas)

    async def _metered(
        self, tier: str, body: dict[str, Any], deltas: AsyncIterator[Delta]
    ) -> AsyncGenerator[Delta, None]:
        seen = StreamProgress()
        try:
            async for delta in deltas:
                seen.note(delta)
                yield delta
        finally:
            used = seen.usage_so_far()
            self._observe(tier, body, seen.usage)
            if seen.usage is None and seen.received:
                used = TokenUsage(self._prompt(tier, body), used.completion_tokens)
            self._add(tier, used)
            await close_now(deltas)

    async def _by_deadline(self, work: Awaitable[T]) -> T:
        """``work``, cancelled at the contract's deadline (``DeadlineReached``)."""
        assert self.contract is not None
        left = self.contract.seconds_left()
        if left is None:
            return await work
        try:
            async with asyncio.timeout(left):
                return await work
        except TimeoutError as exc:
            raise self.contract.reached_deadline() from exc
