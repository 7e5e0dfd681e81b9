"""The Responses API's output: output items, usage and the response object, as plain dicts.

Item ids derive from the response id (``msg_<id>``, ``rs_<id>``, ``fc_<id>_<n>``), so a
streamed item and the same item in the final response agree. Thinking (a reasoning tier's
``reasoning``) is a ``reasoning`` item before the message, unless the client asked for none.
"""

from __future__ import annotations

import time
from typing import Any

from core.request import Decision
from core.result import PolicyResult, ResultChoice
from server.api.common.render import ttc_body, usage_body
from server.api.responses.schema import NamedFunction, ResponsesRequest
from server.endpoint import Call


def request_of(call: Call) -> ResponsesRequest:
    assert isinstance(call.wire, ResponsesRequest)
    return call.wire


def message_id(response_id: str) -> str:
    return "msg_" + response_id.removeprefix("resp_")


def call_item_id(response_id: str, index: int) -> str:
    return f"fc_{response_id.removeprefix('resp_')}_{index}"


def reasoning_id(response_id: str) -> str:
    return "rs_" + response_id.removeprefix("resp_")


def reasoning_item(response_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": reasoning_id(response_id),
        "status": status,
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def output_items(
    response_id: str, choice: ResultChoice, status: str, include_reasoning: bool = True
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if choice.reasoning and include_reasoning:
        items.append(reasoning_item(response_id, choice.reasoning, "completed"))
    if choice.text or not choice.tool_calls:
        items.append(message_item(response_id, choice.text, status))
    for index, call in enumerate(choice.tool_calls):
        function = call.get("function") or {}
        items.append(
            {
                "type": "function_call",
                "id": call_item_id(response_id, index),
                "call_id": call.get("id") or call_item_id(response_id, index),
                "name": function.get("name", ""),
                "arguments": function.get("arguments", ""),
                "status": "completed",
            }
        )
    return items


def message_item(response_id: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": message_id(response_id),
        "status": status,
        "role": "assistant",
        "content": [part],
    }


def assistant_message(output: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat message a response's output items stand for (for the next turn's context)."""
    text = "".join(
        p["text"] for item in output if item["type"] == "message" for p in item["content"]
    )
    calls = [
        {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        for item in output
        if item["type"] == "function_call"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def response_object(call: Call, decision: Decision, result: PolicyResult) -> dict[str, Any]:
    choice = result.choices[0] if result.choices else ResultChoice(0, "", "stop")
    incomplete = choice.finish_reason == "length"
    status = "incomplete" if incomplete else "completed"
    body = response_shell(call, decision, status)
    body["output"] = output_items(call.req.request_id, choice, status, call.include_reasoning)
    body["incomplete_details"] = {"reason": "max_output_tokens"} if incomplete else None
    body["usage"] = responses_usage(result)
    body["ttc"] = ttc_body(decision, result.report)
    body["completed_at"] = int(time.time())
    return body


def responses_usage(result: PolicyResult) -> dict[str, Any]:
    chat = usage_body(result.usage)
    return {
        "input_tokens": chat["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": chat["completion_tokens"],
        "output_tokens_details": chat["completion_tokens_details"],
        "total_tokens": chat["total_tokens"],
        "ttc_details": chat["ttc_details"],
    }


def response_shell(call: Call, decision: Decision, status: str) -> dict[str, Any]:
    """The response object without its output: what ``response.created`` carries."""
    wire = request_of(call)
    fmt = wire.text.format if wire.text and wire.text.format else None
    return {
        "id": call.req.request_id,
        "object": "response",
        "created_at": int(call.created),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": wire.instructions,
        "max_output_tokens": wire.max_output_tokens,
        "model": decision.tier,
        "output": [],
        "parallel_tool_calls": wire.parallel_tool_calls is not False,
        "previous_response_id": wire.previous_response_id,
        "reasoning": {"effort": wire.reasoning.effort if wire.reasoning else None, "summary": None},
        "store": wire.store,
        "temperature": wire.temperature,
        "top_p": wire.top_p,
        "text": {
            "format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}
        },
        "tool_choice": _tool_choice(wire),
        "tools": _tools(wire),
        "truncation": "disabled",
        "usage": None,
        "user": wire.user,
        "metadata": wire.metadata or {},
        "max_tool_calls": wire.max_tool_calls,
        "prompt_cache_key": wire.prompt_cache_key,
        "safety_identifier": wire.safety_identifier,
        "service_tier": wire.service_tier,
    }


def _tool_choice(wire: ResponsesRequest) -> Any:
    if isinstance(wire.tool_choice, NamedFunction):
        return wire.tool_choice.model_dump()
    return wire.tool_choice or "auto"


def _tools(wire: ResponsesRequest) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_none=True) | {"strict": bool(t.strict)} for t in wire.tools or []]
