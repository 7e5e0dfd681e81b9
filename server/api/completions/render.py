"""The text-completion response body and its choices, as plain dicts (the hot path)."""

from __future__ import annotations

from typing import Any

from core.request import Decision
from core.result import ResultChoice
from server.api.completions.schema import CompletionRequest
from server.endpoint import Call


def wire_of(call: Call) -> CompletionRequest:
    assert isinstance(call.wire, CompletionRequest)
    return call.wire


def echoed_here(call: Call) -> bool:
    """``echo`` the gateway applies (the worker's, when it scores the prompt or the prompt is
    token ids, is in its text)."""
    return wire_of(call).echo and not wire_of(call).echoed_upstream


def base_body(call: Call, decision: Decision) -> dict[str, Any]:
    return {
        "id": call.req.request_id,
        "object": "text_completion",
        "created": int(call.created),
        "model": decision.tier,
    }


def choice_body(call: Call, choice: ResultChoice) -> dict[str, Any]:
    echo = wire_of(call).text if echoed_here(call) else ""
    return {
        "index": choice.index,
        "text": echo + choice.text,
        "logprobs": choice.logprobs,
        "finish_reason": choice.finish_reason,
    }
