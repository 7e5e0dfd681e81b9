"""A request body made fit for one engine, at the worker edge, before any worker is picked.

Policies write vLLM's wire format (``continue_final_message`` and ``add_generation_prompt`` in
probes, judges, drafts and forced thinking; ``chat_template_kwargs`` for thinking;
``stream_options.continuous_usage_stats`` for running usage). For another engine a field it
lacks is

- *dropped* when it only hints (``HINTS``: the answer a caller relies on stays the same, or
  the field is at its default: ``logprobs: false``, ``tool_choice: "none"``);
- *refused* otherwise, with ``UnsupportedByTier`` (a 400 naming the tier and what is missing):
  a body that continues a final message sent to an engine that would answer it as a new turn
  instead is a wrong answer, not a degraded one. The router degrades a policy by capability
  before it gets here; this is the last guard, so nothing reaches an upstream that it does
  not understand.

An endpoint the engine lacks (``/v1/completions`` on a hosted API) is ``UnsupportedEndpoint``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import UnsupportedByTier, UnsupportedEndpoint
from workers.engines.base import (
    CHAT,
    COMPLETIONS,
    CONTINUE,
    LOGPROBS,
    STRUCTURED,
    TOKEN_PROMPTS,
    TOOLS,
    TOP_LOGPROBS,
    Engine,
    N,
)

# The request fields of OpenAI's chat and (legacy) completions APIs: every engine takes them,
# unless a capability below says otherwise.
OPENAI_FIELDS = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stream",
        "stream_options",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "user",
        "reasoning_effort",
        "echo",
        "suffix",
        "best_of",
        "metadata",
        "store",
        "service_tier",
    }
)

# Extensions that change nothing a caller relies on when an engine lacks them: a chat
# template's switches (thinking on or off), special-token rendering, scheduling priority.
HINTS = frozenset(
    {
        "chat_template_kwargs",
        "add_generation_prompt",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "priority",
    }
)

# The capability a field asks for when it is set to anything but its default (OpenAI's own
# fields, and vLLM's structured-output extensions).
FIELD_NEEDS = {
    "n": N,
    "logprobs": LOGPROBS,
    "top_logprobs": TOP_LOGPROBS,
    "continue_final_message": CONTINUE,
    "tools": TOOLS,
    "tool_choice": TOOLS,
    "parallel_tool_calls": TOOLS,
    "response_format": STRUCTURED,
    "structured_outputs": STRUCTURED,
    "guided_json": STRUCTURED,
    "guided_regex": STRUCTURED,
    "guided_choice": STRUCTURED,
    "guided_grammar": STRUCTURED,
}


def asks(field: str, value: Any) -> bool:
    """Does ``field: value`` ask for something (rather than state a default)?"""
    if field == "n":
        return isinstance(value, int) and value > 1
    if value is None or value is False or value == [] or value == {} or value == "":
        return False
    if field == "response_format":
        return not (isinstance(value, Mapping) and value.get("type") == "text")
    if field == "tool_choice":
        return bool(value != "none")
    return field != "parallel_tool_calls"  # meaningless without tools, which ask on their own


def token_prompt(prompt: Any) -> bool:
    """Is a completions ``prompt`` token ids (a list of ints, or a list of such lists)?"""
    if not isinstance(prompt, list) or not prompt:
        return False
    first = prompt[0]
    return isinstance(first, int) or (isinstance(first, list) and bool(first))


def endpoint_of(body: Mapping[str, Any]) -> tuple[str, str]:
    """(capability, path) of the endpoint a body goes to."""
    if "prompt" in body:
        return COMPLETIONS, "/v1/completions"
    return CHAT, "/v1/chat/completions"


def adapt(engine: Engine, tier: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` as ``engine`` takes it; raises when it asks for what the engine lacks."""
    capability, path = endpoint_of(body)
    if not engine.can(capability):
        raise UnsupportedEndpoint(
            f"tier '{tier}' does not serve {path}: its engine ({engine.name}) lacks it"
        )
    if capability == COMPLETIONS and token_prompt(body["prompt"]):
        _require(engine, tier, TOKEN_PROMPTS, "prompt")
    out: dict[str, Any] = {}
    for field, value in body.items():
        if _keeps(engine, tier, field, value):
            out[field] = value
    if engine.max_completion_tokens and capability == CHAT and "max_tokens" in out:
        limit = out.pop("max_tokens")
        out.setdefault("max_completion_tokens", limit)
    return out


def _keeps(engine: Engine, tier: str, field: str, value: Any) -> bool:
    """Keep ``field`` (True), drop it (False), or refuse the body (raises)."""
    needed = FIELD_NEEDS.get(field)
    if needed is not None and not engine.can(needed):
        if asks(field, value):
            _require(engine, tier, needed, field)
        return False
    if field in OPENAI_FIELDS or engine.takes(field):
        return True
    if field in HINTS:
        return False
    raise UnsupportedByTier(
        f"tier '{tier}' does not take '{field}': its engine ({engine.name}) has no such field",
        tier=tier,
        capability=None,
        param=field,
    )


def _require(engine: Engine, tier: str, capability: str, field: str) -> None:
    if not engine.can(capability):
        raise UnsupportedByTier(
            f"tier '{tier}' cannot serve this request: its engine ({engine.name}) lacks"
            f" {capability} (asked for by '{field}')",
            tier=tier,
            capability=capability,
            param=field,
        )


def stream_body(engine: Engine, body: Mapping[str, Any]) -> dict[str, Any]:
    """A body for a stream: usage asked for wherever the engine can send it (so a stream is
    billed from the upstream's count), running usage only where it exists (vLLM's
    ``continuous_usage_stats``; elsewhere the gateway counts deltas)."""
    out = {**body, "stream": True}
    if not engine.stream_usage:
        out.pop("stream_options", None)
        return out
    options = {**(body.get("stream_options") or {}), "include_usage": True}
    if not engine.running_usage:
        options.pop("continuous_usage_stats", None)
    out["stream_options"] = options
    return out
