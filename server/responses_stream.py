"""The typed server-sent events of a streamed response, in the order the SDK expects.

    response.created, response.in_progress
    response.output_item.added (message), response.content_part.added
    response.output_text.delta ...                 as the policy streams text
    response.output_text.done, response.content_part.done, response.output_item.done
    response.output_item.added / .function_call_arguments.delta / .done / output_item.done
                                                   for each tool call
    response.completed (or response.incomplete)    the whole response, usage and ``ttc``

Each event is ``event: <type>`` plus ``data: {"type": ..., "sequence_number": n, ...}``,
numbered from 0. A failure mid-stream sends ``error`` and then ``response.failed`` (a status
and an error object on the response). A busy policy sends SSE comments as keep-alives.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from core.backend import Delta
from core.errors import TtcError
from core.request import Decision
from core.result import PolicyResult
from server.endpoint import Call, Event
from server.responses_api import (
    message_id,
    message_item,
    response_object,
    response_shell,
)
from server.streaming import KEEPALIVE

if TYPE_CHECKING:
    from server.responses_api import ResponsesEndpoint


class EventWriter:
    """Numbers the events of one stream and encodes them."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        data = json.dumps(payload, separators=(",", ":"))
        return f"event: {kind}\ndata: {data}\n\n".encode()


class TextItem:
    """The message item while its text streams in."""

    def __init__(self, response_id: str) -> None:
        self.response_id = response_id
        self.id = message_id(response_id)
        self.parts: list[str] = []
        self.open = False

    def start(self, emit: EventWriter) -> bytes:
        self.open = True
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        item = {**message_item(self.response_id, "", "in_progress"), "content": []}
        added = emit("response.output_item.added", output_index=0, item=item)
        return added + emit("response.content_part.added", item_id=self.id, output_index=0,
                            content_index=0, part=part)  # fmt: skip

    def finish(self, emit: EventWriter, item: dict[str, Any]) -> bytes:
        text = "".join(self.parts)
        part = item["content"][0]
        return (
            emit("response.output_text.done", item_id=self.id, output_index=0,
                 content_index=0, text=text, logprobs=[])
            + emit("response.content_part.done", item_id=self.id, output_index=0,
                   content_index=0, part=part)
            + emit("response.output_item.done", output_index=0, item=item)
        )  # fmt: skip


async def response_events(
    endpoint: ResponsesEndpoint,
    call: Call,
    decision: Decision,
    events: AsyncIterator[Event | None],
) -> AsyncIterator[bytes]:
    emit = EventWriter()
    shell = response_shell(call, decision, "in_progress")
    text = TextItem(call.req.request_id)
    calls = ToolCalls()
    yield emit("response.created", response=shell) + emit("response.in_progress", response=shell)
    try:
        async for event in events:
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, Delta):
                calls.note(event)
                if event.index == 0 and event.text:
                    chunk = b"" if text.open else text.start(emit)
                    text.parts.append(event.text)
                    yield chunk + emit("response.output_text.delta", item_id=text.id,
                                       output_index=0, content_index=0, delta=event.text,
                                       logprobs=[])  # fmt: skip
            else:
                body = response_object(call, decision, calls.into(event))
                await endpoint.save(call, body)
                yield b"".join(_closing(emit, text, body))
    except TtcError as exc:
        error = {"code": exc.code or exc.error_type, "message": exc.message}
        failed = {**shell, "status": "failed", "error": error}
        yield emit("error", code=exc.code, message=exc.message, param=exc.param) + emit(
            "response.failed", response=failed
        )


class ToolCalls:
    """Tool calls assembled from streamed deltas (id and name first, then argument pieces)."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, Any]] = {}

    def note(self, delta: Delta) -> None:
        raw = (delta.raw.get("delta") or {}) if delta.raw and delta.index == 0 else {}
        for piece in raw.get("tool_calls") or ():
            empty = {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            call = self.calls.setdefault(int(piece.get("index", 0)), empty)
            call["id"] = piece.get("id") or call["id"]
            function = piece.get("function") or {}
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""

    def into(self, result: PolicyResult) -> PolicyResult:
        """``result`` with the streamed calls on its first choice, if it has none of its own."""
        if not self.calls or not result.choices or result.choices[0].tool_calls:
            return result
        streamed = tuple(self.calls[i] for i in sorted(self.calls))
        first = replace(result.choices[0], tool_calls=streamed)
        return replace(result, choices=(first, *result.choices[1:]))


def _closing(emit: EventWriter, text: TextItem, body: dict[str, Any]) -> Iterator[bytes]:
    output = body["output"]
    for index, item in enumerate(output):
        if item["type"] == "message":
            if not text.open:
                yield text.start(emit)
                if item["content"][0]["text"]:
                    yield emit("response.output_text.delta", item_id=text.id, output_index=0,
                               content_index=0, delta=item["content"][0]["text"], logprobs=[])
                    text.parts.append(item["content"][0]["text"])  # fmt: skip
            yield text.finish(emit, item)
        else:
            yield from _function_call(emit, index, item)
    kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
    yield emit(kind, response=body)


def _function_call(emit: EventWriter, index: int, item: dict[str, Any]) -> Iterator[bytes]:
    pending = {**item, "status": "in_progress", "arguments": ""}
    yield emit("response.output_item.added", output_index=index, item=pending)
    yield emit("response.function_call_arguments.delta", item_id=item["id"],
               output_index=index, delta=item["arguments"])  # fmt: skip
    yield emit("response.function_call_arguments.done", item_id=item["id"],
               output_index=index, arguments=item["arguments"], name=item["name"])  # fmt: skip
    yield emit("response.output_item.done", output_index=index, item=item)

