"""A response's input as the Responses API lists it (``GET /v1/responses/{id}/input_items``).

Each input item the client sent becomes the item OpenAI returns for it, with an id (the
client's, else one derived from the response id and the item's place): a string input is one
user message with an ``input_text`` part; a message's string content becomes one part
(``output_text`` for the assistant, ``input_text`` for the others); function calls, their
outputs and replayed reasoning keep their fields. The items are stored with the response
(``state.responses``) and listed a page at a time, newest first unless ``order`` is ``asc``.
"""

from __future__ import annotations

from typing import Any

from core.errors import InvalidRequest
from server.api.responses.schema import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ResponsesRequest,
)

_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}


def input_items(wire: ResponsesRequest, response_id: str) -> list[dict[str, Any]]:
    suffix = response_id.removeprefix("resp_")
    if isinstance(wire.input, str):
        return [_message("user", wire.input, f"msg_{suffix}_in0")]
    items = []
    for i, item in enumerate(wire.input):
        kind = getattr(item, "type", "message")
        fallback = f"{_PREFIX.get(kind, 'item')}_{suffix}_in{i}"
        items.append(_item(item, getattr(item, "id", None) or fallback))
    return items


def _item(item: object, item_id: str) -> dict[str, Any]:
    if isinstance(item, MessageItem):
        if isinstance(item.content, str):
            return _message(item.role, item.content, item_id)
        parts = [part.model_dump(exclude_none=True) for part in item.content]
        return {
            "type": "message",
            "id": item_id,
            "role": item.role,
            "content": parts,
            "status": "completed",
        }
    if isinstance(item, FunctionCallItem | FunctionCallOutputItem):
        return {**item.model_dump(exclude_none=True), "id": item_id, "status": "completed"}
    assert hasattr(item, "model_dump")
    return {**item.model_dump(exclude_none=True), "id": item_id}


def _message(role: str, text: str, item_id: str) -> dict[str, Any]:
    if role == "assistant":
        part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    else:
        part = {"type": "input_text", "text": text}
    return {
        "type": "message",
        "id": item_id,
        "role": role,
        "content": [part],
        "status": "completed",
    }


def page_of(
    items: list[dict[str, Any]], *, after: str | None, limit: int, order: str
) -> dict[str, Any]:
    """``limit`` items after the one whose id is ``after``, in ``order``, as a list page."""
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after}'.", param="after")
        start = ids.index(after) + 1
    data = ordered[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(ordered),
    }
