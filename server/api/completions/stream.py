"""The text-completion stream: chunks, progress, the final ``ttc`` and usage, ``[DONE]``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from core.backend import Delta
from core.errors import TtcError
from core.progress import Progress
from core.request import Decision
from core.result import PolicyResult
from server.api.common.render import error_body, ttc_body, usage_body
from server.api.common.stream import DONE, KEEPALIVE, sse
from server.api.completions.render import base_body, echoed_here, wire_of
from server.endpoint import Call, Event


async def completion_sse(
    call: Call, decision: Decision, events: AsyncIterator[Event | None]
) -> AsyncIterator[bytes]:
    """Text-completion chunks, the last one held back so ``ttc`` rides on it; with
    ``include_usage`` one more chunk with empty ``choices`` and the usage (as OpenAI sends it);
    then ``[DONE]``. A policy's ``Progress`` is ``ttc.progress`` on an empty piece of choice 0
    (as in chat: ``choices[0]`` of every chunk is there); an error mid-stream is an error
    event, then ``[DONE]``."""
    chunks = _TextChunks(call, decision)
    try:
        async for event in events:
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, Progress):
                yield chunks.progress(event)
            elif isinstance(event, Delta):
                yield chunks.delta(event)
            else:
                yield chunks.result(event)
        yield chunks.flush()
    except TtcError as exc:
        yield chunks.flush() + sse(error_body(exc))
    yield DONE


class _TextChunks:
    """The chunks of one text-completion stream; the latest is held until the next comes."""

    def __init__(self, call: Call, decision: Decision) -> None:
        self.call, self.decision = call, decision
        self.echoed: set[int] = set()
        self.held: dict[str, Any] | None = None

    def flush(self) -> bytes:
        held, self.held = self.held, None
        return sse(held) if held is not None else b""

    def progress(self, event: Progress) -> bytes:
        empty = {"index": 0, "text": "", "logprobs": None, "finish_reason": None}
        chunk = {
            **base_body(self.call, self.decision),
            "choices": [empty],
            "ttc": {"progress": event.body()},
        }
        return self.flush() + sse(chunk)

    def delta(self, event: Delta) -> bytes:
        text = event.text
        if echoed_here(self.call) and event.index not in self.echoed:
            self.echoed.add(event.index)
            text = wire_of(self.call).text + text
        if not (text or event.finish_reason):
            return b""
        out = self.flush()
        self.held = _chunk(self.call, self.decision, event, text)
        return out

    def result(self, event: PolicyResult) -> bytes:
        base = base_body(self.call, self.decision)
        last = self.held if self.held is not None else {**base, "choices": []}
        self.held = None
        report = ttc_body(self.decision, event.report)
        out = sse({**last, "ttc": report})
        if self.call.include_usage:  # the report again beside the usage, as chat has it
            usage = usage_body(event.usage, event.report)
            out += sse({**base, "choices": [], "usage": usage, "ttc": report})
        return out


def _chunk(call: Call, decision: Decision, delta: Delta, text: str) -> dict[str, Any]:
    logprobs = delta.raw.get("logprobs") if delta.raw else None
    choice = {
        "index": delta.index,
        "text": text,
        "logprobs": logprobs,
        "finish_reason": delta.finish_reason,
    }
    return {**base_body(call, decision), "choices": [choice]}
