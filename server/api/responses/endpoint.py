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

import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from core.errors import InvalidRequest, NotFound
from core.profile import EFFORT_LEVEL
from core.request import Decision, GenRequest
from core.result import PolicyResult
from server.api.responses.items import input_items, page_of
from server.api.responses.render import assistant_message, request_of, response_object
from server.api.responses.schema import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    NamedFunction,
    ResponsesRequest,
)
from server.body import decode
from server.endpoint import Call, Event, request_options
from state.responses import ResponseStore

log = logging.getLogger(__name__)


class ResponsesEndpoint:
    name: ClassVar[str] = "responses"
    id_prefix: ClassVar[str] = "resp_"

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    async def parse(self, raw: bytes, request_id: str, deadline: float, owner: str) -> Call:
        body = await decode(raw, ResponsesRequest)
        history = await self._history(body.previous_response_id, owner)
        options = request_options(body.ttc)
        req = GenRequest(
            messages=tuple(conversation(body, history)),
            sampling=sampling(body),
            passthrough=passthrough(body),
            model=body.model,
            reasoning_effort=EFFORT_LEVEL.get(body.reasoning and body.reasoning.effort or ""),
            ttc=options.ttc,
            request_id=request_id,
            deadline=deadline,
            body_bytes=len(raw),
        )
        return Call(
            req,
            stream=body.stream,
            cache=options.cache,
            owner=owner,
            wire=body,
            include_reasoning=options.include_reasoning,
        )

    async def _history(self, previous: str | None, owner: str) -> list[dict[str, Any]]:
        """The conversation ``previous`` ends: each stored response holds its own turn (what
        its input added and its answer) and the id of the one it continued, so a long agent
        loop stores each tool output once, not once per later turn."""
        if previous is None:
            return []
        turns: list[list[dict[str, Any]]] = []
        link: str | None = previous
        while link is not None and len(turns) < MAX_CHAIN:
            record = await self.store.get(link, owner)
            if record is None:
                raise _previous_missing(previous, link)
            turns.append(record["messages"])
            link = record.get("previous")
        if link is not None:
            raise InvalidRequest(
                f"The conversation of '{previous}' is longer than {MAX_CHAIN} responses.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return [message for turn in reversed(turns) for message in turn]

    async def render(self, call: Call, decision: Decision, result: PolicyResult) -> dict[str, Any]:
        body = response_object(call, decision, result)
        await self.save(call, body)
        return body

    def render_stream(
        self, call: Call, decision: Decision, events: AsyncIterator[Event | None]
    ) -> AsyncIterator[bytes]:
        from server.api.responses.stream import response_events  # one idea per module

        return response_events(self, call, decision, events)

    async def retrieve(self, response_id: str, owner: str) -> dict[str, Any]:
        record = await self.store.get(response_id, owner)
        if record is None:
            raise _not_found(response_id)
        response: dict[str, Any] = record["response"]
        return response

    async def input_items(
        self, response_id: str, owner: str, *, after: str | None, limit: int, order: str
    ) -> dict[str, Any]:
        """A page of the items the response was given (its own turn's input)."""
        record = await self.store.get(response_id, owner)
        if record is None:
            raise _not_found(response_id)
        return page_of(record.get("input_items") or [], after=after, limit=limit, order=order)

    async def delete(self, response_id: str, owner: str) -> dict[str, Any]:
        if not await self.store.delete(response_id, owner):
            raise _not_found(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def save(self, call: Call, response: dict[str, Any]) -> None:
        """Keep a finished response and its turn, when the client asked to store it; one too
        large to keep says so (``store: false``) rather than vanish."""
        wire = request_of(call)
        if not wire.store:
            return
        # The turn: what ``input`` added (``instructions`` apply to one response only, so they
        # are not kept) and the answer.
        turn = conversation(wire.model_copy(update={"instructions": None}), [])
        turn.append(assistant_message(response["output"]))
        record = {
            "response": response,
            "messages": turn,
            "previous": wire.previous_response_id,
            "input_items": input_items(wire, response["id"]),
        }
        if not await self.store.put(response["id"], call.owner, record):
            log.warning("response %s not stored: larger than responses.max_bytes", response["id"])
            response["store"] = False


# Links walked to rebuild a conversation: one store read each.
MAX_CHAIN = 1000


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


def _previous_missing(previous: str, link: str) -> InvalidRequest:
    where = "" if link == previous else f" (the earlier response '{link}' it continues is gone)"
    return InvalidRequest(
        f"Previous response with id '{previous}' not found{where}.",
        param="previous_response_id",
        code="previous_response_not_found",
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
        call = {
            "id": item.call_id,
            "type": "function",
            "function": {"name": item.name, "arguments": item.arguments},
        }
        last = messages[-1] if messages else None
        if last is not None and last.get("role") == "assistant":
            # Parallel calls, or the text the model said before calling: one assistant turn,
            # as the model produced it (templates that alternate roles refuse two).
            last.setdefault("tool_calls", []).append(call)
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
