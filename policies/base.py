"""What every policy consumes and produces: ``GenRequest``, ``Decision``, ``PolicyResult``.

A policy turns one validated chat request plus the router's ``Decision`` into either a whole
``PolicyResult`` (``run``) or a stream of ``Delta`` events that ends with exactly one
``PolicyResult`` (``stream``). Every token a policy spends, of samples, probes, judge calls and
rejected drafts, is recorded in its ``UsageLedger`` so ``usage`` is honest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from policies.backend import Backend, Delta, TokenUsage
from policies.params import PolicyParams


@dataclass(frozen=True)
class GenRequest:
    """A validated chat request, as the policies see it.

    ``sampling`` holds the OpenAI sampling fields the client set (temperature, top_p, max_tokens,
    stop, seed, n, logprobs, ...) and ``passthrough`` the extra fields vLLM understands (tools,
    response_format, ...); both go upstream unchanged unless a policy must override one.
    """

    messages: tuple[Mapping[str, Any], ...]
    sampling: Mapping[str, Any] = field(default_factory=dict)
    passthrough: Mapping[str, Any] = field(default_factory=dict)
    model: str = "auto"
    reasoning_effort: str | None = None
    ttc: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = ""
    deadline: float | None = None  # time.monotonic() after which the request must end

    @property
    def n(self) -> int:
        return int(self.sampling.get("n") or 1)

    @property
    def max_tokens(self) -> int | None:
        value = self.sampling.get("max_tokens")
        return int(value) if value is not None else None

    @property
    def question(self) -> str | None:
        """The text of the last user message (the question an answer must address)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return None

    @property
    def needs_single(self) -> bool:
        """Tools and structured output are answered by one plain sample."""
        return bool(self.passthrough.get("tools") or self.passthrough.get("response_format"))

    def body(self, **overrides: Any) -> dict[str, Any]:
        """The upstream chat body: messages, the client's sampling fields, then overrides.

        An override of ``None`` removes the field.
        """
        body: dict[str, Any] = {"messages": [dict(m) for m in self.messages]}
        body.update(self.passthrough)
        body.update(self.sampling)
        for key, value in overrides.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body


@dataclass(frozen=True)
class Decision:
    """The router's plan for one request."""

    tier: str
    policy: PolicyParams
    difficulty: float | None = None
    band: str | None = None
    reasons: tuple[str, ...] = ()

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tier": self.tier, "policy": self.policy.name}
        if self.difficulty is not None:
            out["difficulty"] = round(self.difficulty, 4)
        if self.band is not None:
            out["band"] = self.band
        if self.reasons:
            out["reasons"] = list(self.reasons)
        return out


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
            }
            for kind, tier, u in self.items()
        ]


@dataclass(frozen=True)
class ResultChoice:
    index: int
    text: str
    finish_reason: str
    logprobs: Mapping[str, Any] | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class PolicyResult:
    choices: tuple[ResultChoice, ...]
    usage: UsageLedger
    report: Mapping[str, Any]

    @property
    def message(self) -> str:
        return self.choices[0].text if self.choices else ""


class Policy(Protocol):
    name: ClassVar[str]

    async def run(self, req: GenRequest, plan: Decision, backend: Backend) -> PolicyResult: ...

    def stream(
        self, req: GenRequest, plan: Decision, backend: Backend
    ) -> AsyncIterator[Delta | PolicyResult]: ...


async def stream_whole(
    policy: Policy, req: GenRequest, plan: Decision, backend: Backend
) -> AsyncIterator[Delta | PolicyResult]:
    """``stream`` for a policy that only knows its answer at the end.

    The server keeps the stream alive with SSE comments while ``run`` works, then this emits the
    whole answer as one delta per choice.
    """
    result = await policy.run(req, plan, backend)
    for choice in result.choices:
        yield Delta(index=choice.index, text=choice.text)
        yield Delta(index=choice.index, finish_reason=choice.finish_reason)
    yield result
