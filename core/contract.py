"""The compute contract of one request, and the meter that keeps every sub-call inside it.

A client bounds what one request may spend with ``ttc.max_total_tokens`` (prompt plus
completion tokens of every sub-call: samples, probes, judge calls, drafts, escalations),
``ttc.max_cost`` (the same tokens priced at their tier's ``cost_per_1k_tokens``) and
``ttc.deadline_ms``. ``ContractMeter`` is asked before each sub-call starts (``open``) and told
what it spent as it streams (``progress``) and when it ends (``close``):

- a sub-call's ``max_tokens`` is clamped to what the contract has left after its prompt, divided
  among its ``n`` samples (fewer samples when each would get under ``MIN_SAMPLE_TOKENS``); a
  non-streamed call reserves that worst case until it ends, so concurrent calls cannot both
  spend the same remainder;
- once nothing is left, ``open`` raises ``BudgetReached`` (past the deadline,
  ``DeadlineReached``): the signal policies understand;
- a stream whose running spend passes the contract is cut (``progress`` says so).

The bound: a prompt is priced at the tokens a call with the same prompt reported, else at a
conservative estimate (``prompt_estimate``); with that estimate no lower than the truth, the
spend passes ``max_total_tokens`` (or ``max_cost``) by at most the tokens in-flight streams
had generated when the stop was sent: the delta that crossed the line plus what the worker
generated before it saw the connection close. Non-streamed calls never overshoot: their
``max_tokens`` was clamped to what was left.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.errors import BudgetReached, DeadlineReached
from core.usage import TokenUsage

CONTRACT_FIELDS = ("max_total_tokens", "max_cost", "deadline_ms")
# 16: a sample shorter than this rarely holds an answer; fewer, longer samples beat many stubs.
MIN_SAMPLE_TOKENS = 16
# Prompt estimate before a call has reported one: 3 bytes per token is below what BPE
# vocabularies reach on English (~4) and code (~3.5); 8 tokens per message cover role markers,
# 48 a chat template's preamble (SmolLM2 adds a default system prompt of ~20 tokens).
BYTES_PER_TOKEN = 3
MESSAGE_TOKENS = 8
TEMPLATE_TOKENS = 48


@dataclass(frozen=True)
class ComputeContract:
    """What one request may spend; None: unbounded on that axis."""

    max_total_tokens: int | None = None
    max_cost: float | None = None
    deadline_ms: int | None = None

    @property
    def bounded(self) -> bool:
        return any(getattr(self, name) is not None for name in CONTRACT_FIELDS)

    def worst_case_tokens(self, costs: Mapping[str, float]) -> int | None:
        """The most tokens the request can spend on any tier (None: unbounded)."""
        bounds = [self.max_total_tokens] if self.max_total_tokens is not None else []
        priced = [c for c in costs.values() if c > 0]
        if self.max_cost is not None and priced and len(priced) == len(costs):
            bounds.append(math.floor(self.max_cost * 1000 / min(priced)))
        return min(bounds) if bounds else None


def prompt_key(body: Mapping[str, Any]) -> str:
    """What identifies a prompt: its messages (or raw prompt) and tools."""
    parts = [body.get("messages") or body.get("prompt"), body.get("tools")]
    raw = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def prompt_estimate(body: Mapping[str, Any]) -> int:
    """A conservative count of a prompt's tokens before any call has reported it; exact for a
    prompt of token ids (``[ids]`` or ``[[ids]]``: the worker adds none to it)."""
    ids = token_ids(body.get("prompt"))
    if ids is not None:
        return len(ids)
    messages = body.get("messages") or ()
    parts = [messages or body.get("prompt"), body.get("tools")]
    size = len(json.dumps(parts, default=str, ensure_ascii=False).encode())
    return math.ceil(size / BYTES_PER_TOKEN) + MESSAGE_TOKENS * len(messages) + TEMPLATE_TOKENS


def token_ids(prompt: Any) -> list[Any] | None:
    """The ids of a token-id prompt (``[ids]`` or ``[[ids]]``); None for any other prompt."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], list):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        return prompt
    return None


class PromptCounter(Protocol):
    """The prompt tokens ``tier`` would report for ``body`` (``core.calibration``)."""

    def count(self, tier: str, body: Mapping[str, Any]) -> int: ...


@dataclass
class _Call:
    tier: str
    prompt: int
    tokens: int  # reserved (non-streamed) or generated so far (streams), prompt included


@dataclass
class ContractMeter:
    """The live account of one request against its contract; see the module docstring."""

    contract: ComputeContract
    costs: Mapping[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    started: float = field(default_factory=time.monotonic)
    used_tokens: int = 0
    used_cost: float = 0.0
    stop_reason: str | None = None
    counter: PromptCounter | None = None  # calibrated prompt counts; None: the estimate
    _calls: dict[int, _Call] = field(default_factory=dict)
    _prompts: dict[str, int] = field(default_factory=dict)
    _next: int = 0

    @property
    def deadline(self) -> float | None:
        """When the contract's deadline passes, on ``clock`` (None: no deadline)."""
        ms = self.contract.deadline_ms
        return None if ms is None else self.started + ms / 1000

    def open(self, tier: str, body: dict[str, Any], *, reserve: bool) -> tuple[int, dict[str, Any]]:
        """Admit one sub-call: its handle and its body, clamped to what is left."""
        self._check_deadline()
        prompt = self.known_prompt(body, tier)
        left = self.tokens_left(tier)
        if left is not None:
            body = self._clamped(body, left - prompt)
        n = int(body.get("n") or 1)
        limit = body.get("max_tokens")
        tokens = prompt + (n * int(limit) if reserve and limit is not None else 0)
        handle, self._next = self._next, self._next + 1
        self._calls[handle] = _Call(tier, prompt, tokens)
        return handle, body

    def progress(self, handle: int, completion_tokens: int, prompt_tokens: int | None) -> bool:
        """A stream's running spend; True once the contract is spent past its end (cut it)."""
        call = self._calls[handle]
        call.prompt = prompt_tokens or call.prompt
        call.tokens = call.prompt + completion_tokens
        left = self.tokens_left(call.tier)
        if left is not None and left < 0:
            self.stop_reason = "budget"
            return True
        return False

    def close(self, handle: int, body: Mapping[str, Any], usage: TokenUsage | None) -> None:
        """A sub-call ended: its real usage replaces its reservation (None: keep the estimate
        of what it spent, for a call that reported nothing)."""
        call = self._calls.pop(handle)
        if usage is not None and usage.prompt_tokens > 0:
            self._prompts[prompt_key(body)] = usage.prompt_tokens
        spent = usage.total_tokens if usage is not None else call.tokens
        self.used_tokens += spent
        self.used_cost += spent * self.costs.get(call.tier, 0.0) / 1000

    def known_prompt(self, body: Mapping[str, Any], tier: str | None = None) -> int:
        """The prompt's tokens: as a call of this request reported them, else as ``tier``'s
        calibration counts them, else the conservative estimate."""
        known = self._prompts.get(prompt_key(body))
        if known:
            return known
        if self.counter is not None and tier is not None:
            return self.counter.count(tier, body)
        return prompt_estimate(body)

    def tokens_left(self, tier: str) -> int | None:
        """Tokens the contract still allows on ``tier`` (None: no token or cost bound)."""
        c = self.contract
        in_flight = sum(call.tokens for call in self._calls.values())
        cost_in_flight = sum(
            call.tokens * self.costs.get(call.tier, 0.0) / 1000 for call in self._calls.values()
        )
        bounds = []
        if c.max_total_tokens is not None:
            bounds.append(c.max_total_tokens - self.used_tokens - in_flight)
        price = self.costs.get(tier, 0.0)
        if c.max_cost is not None and price > 0:
            money = c.max_cost - self.used_cost - cost_in_flight
            bounds.append(math.floor(money * 1000 / price))
        return min(bounds) if bounds else None

    def seconds_left(self) -> float | None:
        deadline = self.deadline
        return None if deadline is None else deadline - self.clock()

    def _check_deadline(self) -> None:
        left = self.seconds_left()
        if left is not None and left <= 0:
            raise self.reached_deadline()

    def reached_deadline(self) -> DeadlineReached:
        self.stop_reason = "deadline"
        return DeadlineReached(
            f"ttc.deadline_ms={self.contract.deadline_ms} passed before an answer was ready; "
            "give the request more time",
            param="ttc.deadline_ms",
        )

    def _clamped(self, body: dict[str, Any], available: int) -> dict[str, Any]:
        n = int(body.get("n") or 1)
        wanted = body.get("max_tokens") or body.get("max_completion_tokens")
        if available < 1:
            self.stop_reason = "budget"
            raise BudgetReached(self._too_small(), param=self._bound_field())
        if n > 1 and available // n < MIN_SAMPLE_TOKENS:
            n = max(1, available // MIN_SAMPLE_TOKENS)
        per_sample = available // n
        limit = per_sample if wanted is None else min(int(wanted), per_sample)
        clamped = {**body, "max_tokens": limit}
        if "n" in body:
            clamped["n"] = n
        if "max_completion_tokens" in body:
            clamped["max_completion_tokens"] = limit
        return clamped

    def _bound_field(self) -> str:
        return "ttc.max_total_tokens" if self.contract.max_total_tokens else "ttc.max_cost"

    def _too_small(self) -> str:
        c = self.contract
        spent = f"{self.used_tokens} tokens (cost {self.used_cost:.4g}) already spent"
        terms = ", ".join(
            f"{name}={getattr(c, name)}"
            for name in CONTRACT_FIELDS[:2]
            if getattr(c, name) is not None
        )
        return (
            f"the compute contract ({terms}) is too small: {spent}, and the next call's prompt "
            "alone would not fit; raise it"
        )

    def report(self) -> dict[str, Any]:
        """``ttc.contract``: the terms, what was used, and why the request stopped if it did."""
        c = self.contract
        return {
            "max_total_tokens": c.max_total_tokens,
            "used_tokens": self.used_tokens + sum(k.tokens for k in self._calls.values()),
            "max_cost": c.max_cost,
            "used_cost": round(self.used_cost, 6),
            "deadline_ms": c.deadline_ms,
            "elapsed_ms": round((self.clock() - self.started) * 1000),
            "stop_reason": self.stop_reason,
        }
