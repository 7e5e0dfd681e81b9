"""The typed server-sent events of a streamed response, in the order the SDK expects.

    response.created, response.in_progress
    response.output_item.added (reasoning), response.reasoning_text.delta ...   if it thinks
    response.reasoning_text.done, response.output_item.done                     (reasoning)
    response.output_item.added (message), response.content_part.added
    response.output_text.delta ...                 as the policy streams text
    response.output_text.done, response.content_part.done, response.output_item.done
    response.output_item.added / .function_call_arguments.delta / .done / output_item.done
                                                   for each tool call
    response.completed (or response.incomplete)    the whole response, usage and ``ttc``

A policy's ``Progress`` (a round of samples done; it always comes before any output) is one
more ``response.in_progress`` whose response (still without output) carries
``ttc: {"progress": {...}}``. A type of our own would be neater, but the Node SDK's stream
helper throws on an event type it does not know; ``response.in_progress`` is one both SDKs
handle, and replacing their snapshot with an empty-output response is harmless before output.

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
from core.progress import Progress
from core.request import Decision
from core.result import PolicyResult
from server.api.common.stream import KEEPALIVE
from server.api.responses.render import (
    message_item,
    reasoning_item,
    response_object,
    response_shell,
)
from server.endpoint import Call, Event

if TYPE_CHECKING:
    from server.api.responses.endpoint import ResponsesEndpoint


class EventWriter:
    """Numbers the events of one stream and encodes them."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        data = json.dumps(payload, separators=(",", ":"))
        return f"event: {kind}\ndata: {data}\n\n".encode()


class StreamedItem:
    """A reasoning or message item while its text streams in: opened at its first piece,
    closed once (when the next item starts, or at the end)."""

    def __init__(self, response_id: str, kind: str) -> None:
        self.kind = kind  # "reasoning" or "message"
        build = reasoning_item if kind == "reasoning" else message_item
        self.template = build(response_id, "", "in_progress")
        self.id = self.template["id"]
        self.parts: list[str] = []
        self.index: int | None = None
        self.closed = False

    @property
    def _names(self) -> tuple[str, str]:
        if self.kind == "reasoning":
            return "response.reasoning_text.delta", "response.reasoning_text.done"
        return "response.output_text.delta", "response.output_text.done"

    def piece(self, emit: EventWriter, text: str, index: int) -> bytes:
        out = b"" if self.index is not None else self._open(emit, index)
        self.parts.append(text)
        return out + emit(
            self._names[0],
            item_id=self.id,
            output_index=self.index,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def _open(self, emit: EventWriter, index: int) -> bytes:
        self.index = index
        out = emit(
            "response.output_item.added", output_index=index, item={**self.template, "content": []}
        )
        if self.kind == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out += emit(
                "response.content_part.added",
                item_id=self.id,
                output_index=index,
                content_index=0,
                part=part,
            )
        return out

    def close(self, emit: EventWriter, item: dict[str, Any]) -> bytes:
        if self.closed or self.index is None:
            return b""
        self.closed = True
        text, part, at = "".join(self.parts), item["content"][0], self.index
        out = emit(
            self._names[1],
            item_id=self.id,
            output_index=at,
            content_index=0,
            text=text,
            logprobs=[],
        )
        if self.kind == "message":
            out += emit(
                "response.content_part.done",
                item_id=self.id,
                output_index=at,
                content_index=0,
                part=part,
            )
        return out + emit("response.output_item.done", output_index=at, item=item)


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


class ResponseStream:
    """The state of one streamed response: its items in the order they opened."""

    def __init__(self, call: Call, decision: Decision) -> None:
        self.call, self.decision = call, decision
        self.emit = EventWriter()
        self.thinking = StreamedItem(call.req.request_id, "reasoning")
        self.text = StreamedItem(call.req.request_id, "message")
        self.calls = ToolCalls()

    def delta(self, event: Delta) -> bytes:
        self.calls.note(event)
        if event.index != 0:
            return b""
        out = b""
        if event.reasoning and self.call.include_reasoning and self.text.index is None:
            out += self.thinking.piece(self.emit, event.reasoning, 0)
        if event.text:
            if self.thinking.index is not None and not self.thinking.closed:
                out += self.thinking.close(
                    self.emit, self._item("reasoning", "".join(self.thinking.parts))
                )
            out += self.text.piece(self.emit, event.text, self._next_index())
        return out

    def _next_index(self) -> int:
        return 0 if self.thinking.index is None else 1

    def _item(self, kind: str, text: str) -> dict[str, Any]:
        build = reasoning_item if kind == "reasoning" else message_item
        return build(self.call.req.request_id, text, "completed")

    def arrange(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with its output in the order the stream opened the items (an answer that
        streamed before any thinking comes first); an item the client saw stream is in it even
        if the result has none of that kind."""
        opened = sorted(
            (s for s in (self.thinking, self.text) if s.index is not None),
            key=lambda s: s.index or 0,
        )
        rest = list(body["output"])
        ordered = []
        for streamed in opened:
            kind = streamed.kind
            found = next((item for item in rest if item["type"] == kind), None)
            if found is None:
                found = self._item(kind, "".join(streamed.parts))
            else:
                rest.remove(found)
            ordered.append(found)
        return {**body, "output": ordered + rest}

    def finish(self, body: dict[str, Any]) -> Iterator[bytes]:
        emit = self.emit
        for index, item in enumerate(body["output"]):
            streamed = self.thinking if item["type"] == "reasoning" else self.text
            if item["type"] in ("reasoning", "message"):
                if streamed.index is None:  # the policy answered in one piece at the end
                    yield streamed.piece(emit, item["content"][0]["text"], index)
                yield streamed.close(emit, item)
            else:
                yield from _function_call(emit, index, item)
        kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
        yield emit(kind, response=body)


async def response_events(
    endpoint: ResponsesEndpoint,
    call: Call,
    decision: Decision,
    events: AsyncIterator[Event | None],
) -> AsyncIterator[bytes]:
    state = ResponseStream(call, decision)
    shell = response_shell(call, decision, "in_progress")
    emit = state.emit
    yield emit("response.created", response=shell) + emit("response.in_progress", response=shell)
    try:
        async for event in events:
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, Progress):
                progress = {**shell, "ttc": {"progress": event.body()}}
                yield emit("response.in_progress", response=progress)
            elif isinstance(event, Delta):
                yield state.delta(event)
            else:
                body = state.arrange(response_object(call, decision, state.calls.into(event)))
                await endpoint.save(call, body)
                yield b"".join(state.finish(body))
    except TtcError as exc:
        error = {"code": exc.code or exc.error_type, "message": exc.message}
        failed = {**shell, "status": "failed", "error": error}
        yield emit("error", code=exc.code, message=exc.message, param=exc.param) + emit(
            "response.failed", response=failed
        )


def _function_call(emit: EventWriter, index: int, item: dict[str, Any]) -> Iterator[bytes]:
    pending = {**item, "status": "in_progress", "arguments": ""}
    yield emit("response.output_item.added", output_index=index, item=pending)
    yield emit(
        "response.function_call_arguments.delta",
        item_id=item["id"],
        output_index=index,
        delta=item["arguments"],
    )
    yield emit(
        "response.function_call_arguments.done",
        item_id=item["id"],
        output_index=index,
        arguments=item["arguments"],
        name=item["name"],
    )
    yield emit("response.output_item.done", output_index=index, item=item)
