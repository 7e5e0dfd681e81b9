"""``POST /v1/responses`` as an ``Endpoint``: the Responses API over the same lifecycle as chat.

The request becomes chat messages (``instructions`` first as a system message, then the
stored conversation of ``previous_response_id``, then ``input``), sampling fields
(``max_output_tokens`` is ``max_tokens``) and pass-through fields (function ``tools``,
``tool_choice``, ``text.format`` as ``response_format``), so the router and every policy treat
it exactly as a chat request. The answer becomes output items: a ``message`` with one
``output_text`` part and a ``function_call`` per tool call. With ``store`` (the default) the
response and its conversation are kept (``state.responses``) for ``GET``, ``DELETE`` and
``previous_response_id``, visible only to the key that made them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from pydantic import ValidationError

from core.errors import InvalidRequest, NotFound
from core.request import Decision, GenRequest
from core.result import PolicyResult, ResultChoice
from server.body import parse_json_object
from server.endpoint import Call, Event
from server.errors import from_validation_error
from server.responses import ttc_body, usage_body
from server.responses_schema import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    NamedFunction,
    ResponsesRequest,
)
from state.cache import split_cache_flag
from state.responses import ResponseStore

# Responses' efforts mapped onto the router's three levels ("none"/"minimal": the least).
_EFFORT = {"none": "low", "minimal": "low", "low": "low", "medium": "medium", "high": "high"}


class ResponsesEndpoint:
    name: ClassVar[str] = "responses"
    id_prefix: ClassVar[str] = "resp_"

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    async def parse(self, raw: bytes, request_id: str, deadline: float, owner: str) -> Call:
        try:
            body = ResponsesRequest.model_validate(parse_json_object(raw))
        except ValidationError as exc:
            raise from_validation_error(exc) from exc
        history = await self._history(body.previous_response_id, owner)
        ttc, cache = split_cache_flag(body.ttc)
        req = GenRequest(
            messages=tuple(conversation(body, history)),
            sampling=sampling(body),
            passthrough=passthrough(body),
            model=body.model,
            reasoning_effort=_EFFORT.get(body.reasoning.effort or "") if body.reasoning else None,
            ttc=ttc,
            request_id=request_id,
            deadline=deadline,
        )
        return Call(req, stream=body.stream, cache=cache, owner=owner, wire=body)

    async def _history(self, previous: str | None, owner: str) -> list[dict[str, Any]]:
        if previous is None:
            return []
        record = await self.store.get(previous, owner)
        if record is None:
            raise InvalidRequest(
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return list(record["messages"])

    async def render(self, call: Call, decision: Decision, result: PolicyResult) -> dict[str, Any]:
        body = response_object(call, decision, result)
        await self.save(call, body)
        return body

    def render_stream(
        self, call: Call, decision: Decision, events: AsyncIterator[Event | None]
    ) -> AsyncIterator[bytes]:
        from server.responses_stream import response_events  # one idea per module

        return response_events(self, call, decision, events)

    async def retrieve(self, response_id: str, owner: str) -> dict[str, Any]:
        record = await self.store.get(response_id, owner)
        if record is None:
            raise _not_found(response_id)
        response: dict[str, Any] = record["response"]
        return response

    async def delete(self, response_id: str, owner: str) -> dict[str, Any]:
        if not await self.store.delete(response_id, owner):
            raise _not_found(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def save(self, call: Call, response: dict[str, Any]) -> None:
        """Keep a finished response and its conversation, when the client asked to store it."""
        wire = request_of(call)
        if not wire.store:
            return
        messages = [m for m in call.req.messages if not _is_instructions(m, wire)]
        messages.append(assistant_message(response["output"]))
        await self.store.put(response["id"], call.owner, {"response": response,
                                                          "messages": messages})  # fmt: skip


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


def request_of(call: Call) -> ResponsesRequest:
    assert isinstance(call.wire, ResponsesRequest)
    return call.wire


def _is_instructions(message: Any, wire: ResponsesRequest) -> bool:
    """``instructions`` apply to one response only: they are not carried into the next."""
    return (
        wire.instructions is not None
        and message.get("role") == "system"
        and message.get("content") == wire.instructions
    )


def conversation(body: ResponsesRequest, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    messages.extend(history)
    if isinstance(body.input, str):
        messages.append({"role": "user", "content": body.input})
        return messages
    for item in body.input:
        _append_item(messages, item)
    return messages


def _append_item(messages: list[dict[str, Any]], item: object) -> None:
    if isinstance(item, MessageItem):
        role = "system" if item.role == "developer" else item.role
        messages.append({"role": role, "content": item.text()})
    elif isinstance(item, FunctionCallItem):
        call = {"id": item.call_id, "type": "function",
                "function": {"name": item.name, "arguments": item.arguments}}  # fmt: skip
        last = messages[-1] if messages else None
        if last is not None and last.get("role") == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)  # parallel calls: one assistant turn
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif isinstance(item, FunctionCallOutputItem):
        messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.text()})


def sampling(body: ResponsesRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if body.temperature is not None:
        out["temperature"] = body.temperature
    if body.top_p is not None:
        out["top_p"] = body.top_p
    if body.max_output_tokens is not None:
        out["max_tokens"] = body.max_output_tokens
    return out


def passthrough(body: ResponsesRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if body.tools:
        out["tools"] = [tool.chat() for tool in body.tools]
    if isinstance(body.tool_choice, NamedFunction):
        out["tool_choice"] = {"type": "function", "function": {"name": body.tool_choice.name}}
    elif body.tool_choice is not None:
        out["tool_choice"] = body.tool_choice
    if body.parallel_tool_calls is not None:
        out["parallel_tool_calls"] = body.parallel_tool_calls
    fmt = body.text.format if body.text else None
    if fmt is not None and fmt.type == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema_}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    return out


def message_id(response_id: str) -> str:
    return "msg_" + response_id.removeprefix("resp_")


def call_item_id(response_id: str, index: int) -> str:
    return f"fc_{response_id.removeprefix('resp_')}_{index}"


def output_items(response_id: str, choice: ResultChoice, status: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if choice.text or not choice.tool_calls:
        items.append(message_item(response_id, choice.text, status))
    for index, call in enumerate(choice.tool_calls):
        function = call.get("function") or {}
        items.append({
            "type": "function_call", "id": call_item_id(response_id, index),
            "call_id": call.get("id") or call_item_id(response_id, index),
            "name": function.get("name", ""), "arguments": function.get("arguments", ""),
            "status": "completed",
        })  # fmt: skip
    return items


def message_item(response_id: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "message", "id": message_id(response_id), "status": status,
            "role": "assistant", "content": [part]}  # fmt: skip


def assistant_message(output: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat message a response's output items stand for (for the next turn's context)."""
    text = "".join(p["text"] for item in output if item["type"] == "message"
                   for p in item["content"])  # fmt: skip
    calls = [{"id": item["call_id"], "type": "function",
              "function": {"name": item["name"], "arguments": item["arguments"]}}
             for item in output if item["type"] == "function_call"]  # fmt: skip
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def response_object(call: Call, decision: Decision, result: PolicyResult) -> dict[str, Any]:
    choice = result.choices[0] if result.choices else ResultChoice(0, "", "stop")
    incomplete = choice.finish_reason == "length"
    status = "incomplete" if incomplete else "completed"
    body = response_shell(call, decision, status)
    body["output"] = output_items(call.req.request_id, choice, status)
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
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": chat["total_tokens"],
        "ttc_details": chat["ttc_details"],
    }


def response_shell(call: Call, decision: Decision, status: str) -> dict[str, Any]:
    """The response object without its output: what ``response.created`` carries."""
    wire = request_of(call)
    fmt = wire.text.format if wire.text and wire.text.format else None
    return {
        "id": call.req.request_id, "object": "response", "created_at": int(time.time()),
        "status": status, "error": None, "incomplete_details": None,
        "instructions": wire.instructions, "max_output_tokens": wire.max_output_tokens,
        "model": decision.tier, "output": [],
        "parallel_tool_calls": wire.parallel_tool_calls is not False,
        "previous_response_id": wire.previous_response_id,
        "reasoning": {"effort": wire.reasoning.effort if wire.reasoning else None,
                      "summary": None},
        "store": wire.store, "temperature": wire.temperature, "top_p": wire.top_p,
        "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt
                 else {"type": "text"}},
        "tool_choice": _tool_choice(wire), "tools": _tools(wire), "truncation": "disabled",
        "usage": None, "user": wire.user, "metadata": wire.metadata or {},
    }  # fmt: skip


def _tool_choice(wire: ResponsesRequest) -> Any:
    if isinstance(wire.tool_choice, NamedFunction):
        return wire.tool_choice.model_dump()
    return wire.tool_choice or "auto"


def _tools(wire: ResponsesRequest) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_none=True) | {"strict": bool(t.strict)} for t in wire.tools or []]
