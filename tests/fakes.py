"""Unit-test fakes of the ``Backend`` seam (never used by integration tests).

``ScriptedBackend`` answers each call with a function of (tier, body); it records every call so
tests can assert what a policy asked for, and how many samples it drew.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from core.backend import Choice, Completion, Delta
from core.usage import TokenUsage

Responder = Callable[[str, dict[str, Any]], list[str]]


def choice(index: int, text: str, logprob: float = -0.1, finish: str = "stop") -> Choice:
    tokens = tuple(text.split(" ")) if text else ()
    return Choice(
        index=index,
        text=text,
        finish_reason=finish,
        token_logprobs=tuple(logprob for _ in tokens),
        tokens=tokens,
        raw={"message": {"role": "assistant", "content": text}},
    )


def completion(texts: list[str], prompt_tokens: int = 10, logprob: float = -0.1) -> Completion:
    choices = tuple(choice(i, t, logprob) for i, t in enumerate(texts))
    used = sum(len(t.split(" ")) for t in texts)
    return Completion(choices=choices, usage=TokenUsage(prompt_tokens, used), model="fake")


@dataclass
class ScriptedBackend:
    """``respond(tier, body)`` returns the texts of the ``n`` choices of one call."""

    respond: Responder
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delay_s: float = 0.0
    logprob: float = -0.1  # of every token: exp(-0.1) = 0.905, a confident sample

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.calls.append((tier, body))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return completion(self.respond(tier, body), logprob=self.logprob)

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        self.calls.append((tier, body))
        texts = self.respond(tier, body)
        for i, text in enumerate(texts):
            for word in text.split(" "):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield Delta(index=i, text=word + " ")
            yield Delta(index=i, finish_reason="stop")
        used = sum(len(t.split(" ")) for t in texts)
        yield Delta(usage=TokenUsage(10, used))
