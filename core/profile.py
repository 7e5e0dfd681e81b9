"""What a tier's model can do and how to drive it: ``ModelProfile``.

A tier with no profile (``ModelProfile()``) is a plain chat model: no thinking, no tool calls,
today's behaviour. A profile says how its family marks thinking and how the worker parses it
(vLLM's ``--reasoning-parser``), how to switch thinking off, the answer prompt that closes the
thinking and asks for the final answer, which thinking-budget mechanism the worker supports,
the thinking budget each ``reasoning_effort`` buys, and the worker's tool-call parser (vLLM's
``--enable-auto-tool-choice --tool-call-parser``). Presets live in ``workers.profiles``; the
config names one per tier (``tiers.<name>.profile``) or spells one out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Effort = Literal["minimal", "low", "medium", "high"]
# What clients may send (OpenAI's reasoning efforts), and the level each means here: "none" is
# the least there is, "xhigh" and "max" the most.
ClientEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
EFFORT_LEVEL: dict[str, Effort] = {
    "none": "minimal",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}


@dataclass(frozen=True)
class Thinking:
    """How a reasoning model thinks, and how the gateway bounds and closes its thinking."""

    parser: str  # vLLM --reasoning-parser: deepseek_r1, qwen3, openai_gptoss, ...
    start: str = "<think>"
    end: str = "</think>"
    # Appended after ``end`` when the gateway closes the thinking itself (budget forcing, a
    # convergence probe): it asks for the answer from what the model has thought so far.
    answer_prompt: str = "\n\nThe final answer is "
    # chat_template_kwargs that switch thinking off (effort "minimal" with budget 0).
    off: Mapping[str, Any] = field(default_factory=dict)
    # "vllm": the worker enforces ``thinking_token_budget`` (started with a reasoning config);
    # "forced": the gateway stops the thinking at the budget and continues with the answer.
    budget_mechanism: Literal["vllm", "forced"] = "forced"
    # Thinking tokens each reasoning_effort buys (0: thinking off).
    budgets: Mapping[str, int] = field(
        default_factory=lambda: {"minimal": 0, "low": 256, "medium": 1024, "high": 4096}
    )
    # The largest ``ttc.thinking_budget`` a request may ask for on this tier.
    max_budget: int = 32768
    # Answer tokens after forced thinking when the client set no max_tokens; with max_tokens,
    # the room kept for the answer when thinking would take them all.
    answer_tokens: int = 256


@dataclass(frozen=True)
class ModelProfile:
    name: str = "plain"
    thinking: Thinking | None = None
    tool_parser: str | None = None  # vLLM --tool-call-parser; None: the tier cannot call tools

    @property
    def calls_tools(self) -> bool:
        return self.tool_parser is not None

    @property
    def thinks(self) -> bool:
        return self.thinking is not None


PLAIN = ModelProfile()


@dataclass(frozen=True)
class ThinkingPlan:
    """The router's plan for one request's thinking on a reasoning tier (``Decision.thinking``):
    the profile's ``thinking`` and the budget the request gets (0: no thinking at all)."""

    thinking: Thinking
    budget: int
    source: str  # what set the budget: "ttc.thinking_budget", "reasoning_effort", "default"

    @property
    def forced(self) -> bool:
        """Whether the gateway, not the worker, holds the budget."""
        return self.thinking.budget_mechanism == "forced"

    def report(self) -> dict[str, Any]:
        return {"thinking_budget": self.budget}
