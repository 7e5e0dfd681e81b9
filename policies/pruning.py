"""DeepConf-style pruning of low-confidence samples for ``adaptive_bon`` (``prune: true``).

DeepConf (Fu et al. 2025) watches each trace's *group confidence*: the mean token
log-probability over a sliding window of its last ``window`` tokens. The first finished samples
calibrate a threshold: each one's *lowest* group confidence, and the threshold is the value that
``keep`` of them stay at or above (``calibrated_threshold``). Every later sample is drawn as its
own stream (n=1, so one can be stopped without the others) and is stopped the moment its group
confidence falls below the threshold: its stream is closed, which makes vLLM abort it, and it
does not vote. A sample shorter than one window is never pruned.

Tokens: a pruned sample's tokens were generated and are billed (ledger kind "sample"). Each
stream asks for the worker's running usage (``continuous_usage_stats``), so a pruned sample's
usage is the worker's count when it was stopped; without one it is estimated (the request's
prompt estimate, one token per delta).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.backend import Backend, Choice, Delta, close_now
from core.errors import ContractReached
from core.usage import TokenUsage


def lowest_window_mean(logprobs: Sequence[float], window: int) -> float | None:
    """The lowest mean over any ``window`` consecutive log-probabilities (the whole trace's
    mean when it is shorter; None when it has none)."""
    if not logprobs:
        return None
    if len(logprobs) <= window:
        return sum(logprobs) / len(logprobs)
    running = sum(logprobs[:window])
    lowest = running
    for i in range(window, len(logprobs)):
        running += logprobs[i] - logprobs[i - window]
        lowest = min(lowest, running)
    return lowest / window


def calibrated_threshold(
    traces: Iterable[Sequence[float]], window: int, keep: float
) -> float | None:
    """The group confidence that ``keep`` of the calibration traces never fell below (None
    without a trace that has log-probabilities)."""
    lows = sorted(v for t in traces if (v := lowest_window_mean(t, window)) is not None)
    if not lows:
        return None
    # keep 0.9 of 10 traces: the 2nd lowest is the threshold, so 9 of them stay at or above it.
    position = min(len(lows) - 1, max(0, math.floor(len(lows) * (1 - keep))))
    return lows[position]


@dataclass
class _Stream:
    """One sample as it streams: its text, thinking, token log-probabilities and usage."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entries: list[Any] = field(default_factory=list)
    deltas: int = 0
    finish: str | None = None
    usage: TokenUsage | None = None

    def add(self, delta: Delta) -> None:
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.finish_reason:
            self.finish = delta.finish_reason
        if delta.text or delta.reasoning:
            self.deltas += 1
            self.text.append(delta.text)
            self.reasoning.append(delta.reasoning)
        for entry in (delta.raw.get("logprobs") or {}).get("content") or ():
            if isinstance(entry, dict) and isinstance(entry.get("logprob"), (int, float)):
                self.entries.append(entry)
                self.tokens.append(str(entry.get("token", "")))
                self.logprobs.append(float(entry["logprob"]))

    def spent(self, prompt_estimate: int) -> TokenUsage:
        """The worker's running usage, which may lag the last delta read; else the estimate."""
        if self.usage is None:
            return TokenUsage(prompt_estimate, self.deltas)
        return replace(self.usage, completion_tokens=max(self.usage.completion_tokens, self.deltas))

    def choice(self, index: int) -> Choice:
        text, reasoning = "".join(self.text), "".join(self.reasoning)
        message = {"role": "assistant", "content": text, "reasoning": reasoning or None}
        raw = {"message": message, "logprobs": {"content": self.entries}}
        return Choice(
            index=index,
            text=text,
            finish_reason=self.finish or "stop",
            token_logprobs=tuple(self.logprobs),
            reasoning=reasoning,
            tokens=tuple(self.tokens),
            raw=raw,
        )


@dataclass
class PrunedRound:
    """What one round of separately streamed samples gave: the samples that finished (in
    launch order), what all of them spent, how many were pruned, and the compute contract's
    stop if it cut the round (its cut samples do not vote; their tokens are in ``usage``)."""

    choices: list[Choice]
    usage: TokenUsage
    pruned: int
    stop: ContractReached | None = None


async def draw_streamed(
    backend: Backend,
    tier: str,
    bodies: Sequence[dict[str, Any]],
    *,
    threshold: float | None,
    window: int,
    prompt_estimate: int,
    affinity: str | None,
    live: Callable[[Delta], None] | None = None,
) -> PrunedRound:
    """Stream one sample per body concurrently; stop any whose group confidence falls below
    ``threshold`` (None: none is stopped). ``live`` sees the thinking of the first sample as
    it arrives. A sample that fails stops the others (closed upstream) and its error is
    raised; the contract cutting a sample ends the round with what the others finished.
    Cancelling this cancels (closes) every stream still running."""
    running = {"include_usage": True, "continuous_usage_stats": True}

    async def one(position: int, body: dict[str, Any]) -> tuple[_Stream, str]:
        sample = _Stream()
        upstream = backend.stream_chat(tier, {**body, "stream_options": running}, affinity=affinity)
        recent: deque[float] = deque(maxlen=window)
        try:
            async for delta in upstream:
                before = len(sample.logprobs)
                sample.add(delta)
                if live is not None and position == 0 and delta.reasoning:
                    live(Delta(reasoning=delta.reasoning))
                if threshold is None:
                    continue
                recent.extend(sample.logprobs[before:])
                if len(recent) == window and sum(recent) / window < threshold:
                    return sample, "pruned"  # the finally closes the stream upstream
            return sample, "finished"
        except ContractReached as stop:
            samples_cut.append(stop)
            return sample, "cut"
        finally:
            await close_now(upstream)

    samples_cut: list[ContractReached] = []
    tasks = [asyncio.ensure_future(one(i, b)) for i, b in enumerate(bodies)]
    try:
        done = await asyncio.gather(*tasks)
    finally:  # one failed, or this was cancelled: the rest stop now, upstream too
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    spent = TokenUsage()
    choices: list[Choice] = []
    for sample, ending in done:
        spent += sample.spent(prompt_estimate)
        if ending == "finished":
            choices.append(sample.choice(len(choices)))
    pruned = sum(1 for _, ending in done if ending == "pruned")
    return PrunedRound(choices, spent, pruned, samples_cut[0] if samples_cut else None)
