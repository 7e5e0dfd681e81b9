"""What a policy produces: ``PolicyResult`` (choices, the usage ledger, the ``ttc`` report)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.usage import UsageLedger


@dataclass(frozen=True)
class ResultChoice:
    index: int
    text: str
    finish_reason: str
    logprobs: Mapping[str, Any] | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    reasoning: str = ""  # the thinking behind ``text`` (reasoning tiers)


@dataclass(frozen=True)
class PolicyResult:
    choices: tuple[ResultChoice, ...]
    usage: UsageLedger
    report: Mapping[str, Any]

    @property
    def message(self) -> str:
        return self.choices[0].text if self.choices else ""
