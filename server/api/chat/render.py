"""Wire shapes of the OpenAI chat response and stream chunks, built as plain dicts."""

from __future__ import annotations

import time
from typing import Any

from core.backend import Delta
from core.request import Decision
from core.result import PolicyResult, ResultChoice
from server.api.common.render import ttc_body, usage_body


def _choice_body(choice: ResultChoice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.text}
    if choice.reasoning:
        message["reasoning"] = choice.reasoning
    if choice.tool_calls:
        message["tool_calls"] = list(choice.tool_calls)
    return {
        "index": choice.index,
        "message": message,
        "logprobs": choice.logprobs,
        "finish_reason": choice.finish_reason,
    }


def completion_body(
    request_id: str, model: str, decision: Decision, result: PolicyResult
) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [_choice_body(c) for c in result.choices],
        "usage": usage_body(result.usage, result.report),
        "ttc": ttc_body(decision, result.report),
    }


def without_reasoning(body: dict[str, Any]) -> dict[str, Any]:
    """A chat completion without the thinking (``ttc.include_reasoning: false``)."""
    for choice in body["choices"]:
        choice["message"].pop("reasoning", None)
    return body


class ChunkFactory:
    """Builds the chunks of one stream (same id, created and model on each). Thinking goes
    out as ``delta.reasoning`` (vLLM's name; a worker's older ``reasoning_content`` is renamed),
    or not at all when the client asked for none."""

    def __init__(
        self,
        request_id: str,
        model: str,
        include_reasoning: bool = True,
        include_usage: bool = False,
    ) -> None:
        self._reasoning = include_reasoning
        self._base: dict[str, Any] = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        if include_usage:  # as OpenAI: every chunk but the last says ``usage: null``
            self._base["usage"] = None

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**self._base, "choices": choices, **extra}

    def role(self) -> dict[str, Any]:
        """The first chunk: choice 0's role (a later choice gets its role on its first delta)."""
        first = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        return self.chunk([first])

    def delta(self, delta: Delta) -> dict[str, Any]:
        raw_delta = delta.raw.get("delta") if delta.raw else None
        body: dict[str, Any] = dict(raw_delta) if raw_delta else {}
        body.pop("role", None)
        body.pop("reasoning_content", None)
        body.pop("reasoning", None)
        if delta.reasoning and self._reasoning:
            body["reasoning"] = delta.reasoning
        if delta.text or "content" in body:
            body["content"] = delta.text
        choice = {
            "index": delta.index,
            "delta": body,
            "logprobs": delta.raw.get("logprobs") if delta.raw else None,
            "finish_reason": delta.finish_reason,
        }
        return self.chunk([choice])
