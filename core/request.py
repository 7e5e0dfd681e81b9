"""What a request is once validated (``GenRequest``) and what the router made of it (``Decision``).

Every endpoint (chat, and the ones to come) turns its wire body into one ``GenRequest``; the
router turns that into one ``Decision``; policies consume both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.contract import ComputeContract
from core.profile import ThinkingPlan


class PolicySpec(Protocol):
    """A policy's validated parameters (``policies.params``); ``name`` keys the registry."""

    @property
    def name(self) -> str: ...

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]: ...


# vLLM's structured-output fields: a constrained answer, which a chain of thought or a vote on
# extracted answers would break.
STRUCTURED_EXTRAS = (
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "structured_outputs",
)


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
    body_bytes: int = 0  # size of the client's body: big ones are routed off the event loop
    prompt: str | None = None  # a text completion's raw prompt (``messages`` then hold it as
    # one user message, for the router's features and the answer extraction)
    contract: ComputeContract = ComputeContract()  # resolved by the lifecycle (core.contract)

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
        """Tools the model may call and structured output (``response_format`` other than
        text, or vLLM's structured-output extras) are answered by one plain sample."""
        p = self.passthrough
        tools = bool(p.get("tools")) and p.get("tool_choice") != "none"
        fmt = p.get("response_format")
        structured = isinstance(fmt, Mapping) and fmt.get("type") not in (None, "text")
        return tools or structured or any(p.get(k) is not None for k in STRUCTURED_EXTRAS)

    @property
    def text_only(self) -> bool:
        """A text completion (``/v1/completions``): a raw ``prompt``, no chat messages."""
        return self.prompt is not None

    def body(self, **overrides: Any) -> dict[str, Any]:
        """The upstream body: messages (or the raw ``prompt`` of a text completion), the
        client's sampling fields, then overrides. An override of ``None`` removes the field.
        """
        body: dict[str, Any] = (
            {"prompt": self.prompt}
            if self.prompt is not None
            else {"messages": [dict(m) for m in self.messages]}
        )
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
    """The router's decision for one request."""

    tier: str
    params: PolicySpec
    difficulty: float | None = None
    band: str | None = None
    reasons: tuple[str, ...] = ()
    thinking: ThinkingPlan | None = None  # a reasoning tier's thinking budget (router.thinking)
    shape: str | None = None  # the predicted answer shape, closed or open (router.answer_shape)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tier": self.tier, "policy": self.params.name}
        if self.difficulty is not None:
            out["difficulty"] = round(self.difficulty, 4)
        if self.shape is not None:
            out["shape"] = self.shape
        if self.band is not None:
            out["band"] = self.band
        if self.reasons:
            out["reasons"] = list(self.reasons)
        if self.thinking is not None:
            out.update(self.thinking.report())
        return out
