"""Tokens: ``TokenUsage`` for one call, ``UsageLedger`` for every call of one request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenUsage:
    """Tokens of one or more calls; ``reasoning_tokens`` are the part of ``completion_tokens``
    the model spent thinking (as the worker's reasoning parser counts them)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageLedger:
    """Accumulates every token a request spends, itemised by kind and tier."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], TokenUsage] = {}

    def add(self, kind: str, tier: str, usage: TokenUsage) -> None:
        key = (kind, tier)
        self._items[key] = self._items.get(key, TokenUsage()) + usage

    @property
    def total(self) -> TokenUsage:
        return sum(self._items.values(), TokenUsage())

    def items(self) -> list[tuple[str, str, TokenUsage]]:
        return [(kind, tier, usage) for (kind, tier), usage in sorted(self._items.items())]

    def details(self) -> list[dict[str, Any]]:
        return [
            {
                "kind": kind,
                "tier": tier,
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "reasoning_tokens": u.reasoning_tokens,
            }
            for kind, tier, u in self.items()
        ]
