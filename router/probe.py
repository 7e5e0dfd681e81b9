"""The probe predictor: a one-token glimpse from a small tier, through the ``Backend`` seam.

It asks the tier for one completion token with ``top_logprobs`` and reads the entropy of the
first token's distribution: a model that knows how to start ("Paris") is sure, one that does
not spreads its mass. The entropy is normalised to [0, 1] and used as a difficulty. The
router calls it only when a cheap predictor is unsure (``router.probe``); its prompt and
completion tokens are billed to the request as usage kind ``"probe"``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.backend import Backend, Completion
from core.request import GenRequest
from core.tracing import subcall
from core.usage import TokenUsage
from router.config import ProbeConfig


class ProbeFailed(Exception):
    """The probe gave no usable answer (timeout, upstream error, no logprobs)."""

    def __init__(self, message: str, usage: TokenUsage | None = None) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class DifficultyProbe:
    difficulty: float
    entropy: float  # nats, over the top-k tokens plus one bucket for the remaining mass
    usage: TokenUsage
    tier: str


class Prober(Protocol):
    async def probe(self, req: GenRequest, backend: Backend, tier: str) -> DifficultyProbe: ...


def first_token_entropy(logprobs: Sequence[float]) -> tuple[float, float]:
    """(entropy in nats, entropy normalised by its maximum) of a top-k distribution.

    The mass outside the top k counts as one more outcome, so the value is a lower bound of
    the true entropy; the maximum is log(k + 1).
    """
    probs = [math.exp(lp) for lp in logprobs]
    rest = max(0.0, 1.0 - sum(probs))
    outcomes = [p for p in (*probs, rest) if p > 0.0]
    entropy = -sum(p * math.log(p) for p in outcomes)
    return entropy, min(entropy / math.log(len(probs) + 1), 1.0) if probs else 1.0


def top_logprobs(completion: Completion) -> list[float]:
    """The first generated token's top log-probabilities, in either of vLLM's shapes: chat's
    (``logprobs.content[0].top_logprobs``, a list of entries) or a text completion's
    (``logprobs.top_logprobs[0]``, a token -> logprob mapping)."""
    if not completion.choices:
        return []
    logprobs: Mapping[str, Any] = completion.choices[0].raw.get("logprobs") or {}
    content = logprobs.get("content")
    if content:
        return [float(t["logprob"]) for t in content[0].get("top_logprobs") or []]
    text_tops = logprobs.get("top_logprobs")
    if text_tops and isinstance(text_tops[0], Mapping):
        return [float(v) for v in text_tops[0].values()]
    return []


class FirstTokenProbe:
    def __init__(self, config: ProbeConfig) -> None:
        self._config = config

    def body(self, req: GenRequest) -> dict[str, Any]:
        """The request's own messages, one token, top-k logprobs, nothing the client streams."""
        return req.body(
            max_tokens=1,
            max_completion_tokens=None,
            n=None,
            stream=None,
            stream_options=None,
            logprobs=True,
            top_logprobs=self._config.top_logprobs,
        )

    async def probe(self, req: GenRequest, backend: Backend, tier: str) -> DifficultyProbe:
        try:
            async with asyncio.timeout(self._config.timeout_s):
                # Same affinity as the policy's samples: the probe warms that worker's cache.
                with subcall("route_probe"):
                    completion = await backend.chat(tier, self.body(req), affinity=req.request_id)
        except TimeoutError as exc:
            raise ProbeFailed(f"probe timed out after {self._config.timeout_s}s") from exc
        values = top_logprobs(completion)
        if not values:
            raise ProbeFailed("probe returned no top_logprobs", completion.usage)
        entropy, normalised = first_token_entropy(values)
        return DifficultyProbe(normalised, entropy, completion.usage, tier)
