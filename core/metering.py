"""What one request actually spent upstream, whatever becomes of it.

A policy reports its spend in ``PolicyResult.usage`` when it finishes. A request that fails
half-way, hits its deadline, or whose client goes away never gets that far, yet its finished
samples, probes and partial streams were generated and must still be billed. ``MeteredBackend``
wraps the pool for one request and adds up what every upstream call cost as it happens:

- a finished ``chat`` call: the usage the worker reported;
- a stream, however it ends (finished, failed, or closed by its consumer): the worker's latest
  usage when it sent one, otherwise one completion token per text delta (vLLM streams about one
  token per delta) and no prompt tokens.

A ``chat`` call cancelled in flight reports nothing and is not counted: vLLM aborts it and says
nothing of what it had generated.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from core.backend import Backend, Completion, Delta, close_now
from core.usage import TokenUsage


@dataclass
class StreamProgress:
    started: bool = False
    text_deltas: int = 0  # vLLM streams about one token per delta
    usage: TokenUsage | None = None  # the upstream's latest cumulative usage, if it sent one

    def note(self, delta: Delta) -> None:
        if delta.text or delta.reasoning:
            self.text_deltas += 1
        if delta.usage is not None:
            self.usage = delta.usage

    def usage_so_far(self) -> TokenUsage:
        """Upstream usage when known (completion at least the deltas seen), else the estimate."""
        if self.usage is None:
            return TokenUsage(0, self.text_deltas)
        return TokenUsage(self.usage.prompt_tokens, max(self.usage.completion_tokens,
                                                        self.text_deltas))  # fmt: skip


class MeteredBackend:
    """``Backend`` for one request that keeps the running total of its upstream spend."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.spent = TokenUsage()

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        completion = await self._inner.chat(tier, body, affinity=affinity)
        self.spent += completion.usage
        return completion

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncGenerator[Delta, None]:
        seen = StreamProgress()
        deltas = self._inner.stream_chat(tier, body, affinity=affinity)
        try:
            async for delta in deltas:
                seen.note(delta)
                yield delta
        finally:
            self.spent += seen.usage_so_far()
            await close_now(deltas)
