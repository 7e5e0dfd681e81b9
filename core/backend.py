"""The seam between policies and the workers that generate: ``Backend``.

A policy sends OpenAI chat bodies (plain dicts, the wire format vLLM accepts) to a *tier* and
gets back parsed completions or stream deltas. It never learns which worker answered; the
``affinity`` key lets it ask that related calls (samples, probes, steps of one request) land on
the worker whose KV cache already holds the prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.usage import TokenUsage


@dataclass(frozen=True)
class Choice:
    """One generated sample.

    ``token_logprobs`` holds the sampled tokens' log-probabilities when the body asked for
    ``logprobs``; ``raw`` is the upstream choice object (message, tool calls, logprobs) kept
    for pass-through.
    """

    index: int
    text: str
    finish_reason: str | None
    token_logprobs: tuple[float, ...] = ()
    reasoning: str = ""  # the thinking, when the worker's reasoning parser split it off
    tokens: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mean_logprob(self) -> float | None:
        if not self.token_logprobs:
            return None
        return sum(self.token_logprobs) / len(self.token_logprobs)


@dataclass(frozen=True)
class Completion:
    choices: tuple[Choice, ...]
    usage: TokenUsage
    model: str


@dataclass(frozen=True)
class Delta:
    """One streamed increment of choice ``index``; the last event of a stream carries usage."""

    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    reasoning: str = ""  # a piece of thinking (never part of ``text``)
    usage: TokenUsage | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


async def close_now(iterator: AsyncIterator[Any]) -> None:
    """Close an async iterator now, not when it is garbage collected: closing a stream from a
    worker closes its connection, which makes vLLM abort the request."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


class Backend(Protocol):
    """Generation, as policies see it. Implemented by ``workers.pool.WorkerPool``."""

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion: ...

    def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]: ...
