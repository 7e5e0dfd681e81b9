"""``POST /v1/chat/completions`` as an ``Endpoint``: the OpenAI chat body in, chat shapes out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from core.profile import EFFORT_LEVEL
from core.request import Decision, GenRequest
from core.result import PolicyResult
from server.api.chat.render import ChunkFactory, completion_body, without_reasoning
from server.api.chat.schema import ChatCompletionRequest
from server.api.chat.stream import chat_sse
from server.body import decode, parse_as
from server.endpoint import Call, Event, request_options


def parse_chat(raw: bytes) -> ChatCompletionRequest:
    return parse_as(raw, ChatCompletionRequest)


class ChatEndpoint:
    name: ClassVar[str] = "chat"
    id_prefix: ClassVar[str] = "chatcmpl-"

    async def parse(self, raw: bytes, request_id: str, deadline: float, owner: str) -> Call:
        chat = await decode(raw, ChatCompletionRequest)
        options = request_options(chat.ttc)
        req = GenRequest(
            messages=chat.wire_messages(),
            sampling=chat.sampling(),
            passthrough=chat.passthrough(),
            model=chat.model,
            reasoning_effort=EFFORT_LEVEL.get(chat.reasoning_effort or ""),
            ttc=options.ttc,
            request_id=request_id,
            deadline=deadline,
            body_bytes=len(raw),
        )
        stream, usage = bool(chat.stream), chat.include_usage
        return Call(
            req,
            stream=stream,
            include_usage=usage,
            cache=options.cache,
            owner=owner,
            include_reasoning=options.include_reasoning,
        )

    async def render(self, call: Call, decision: Decision, result: PolicyResult) -> dict[str, Any]:
        body = completion_body(call.req.request_id, decision.tier, decision, result)
        return body if call.include_reasoning else without_reasoning(body)

    def render_stream(
        self, call: Call, decision: Decision, events: AsyncIterator[Event | None]
    ) -> AsyncIterator[bytes]:
        chunks = ChunkFactory(
            call.req.request_id, decision.tier, call.include_reasoning, call.include_usage
        )
        return chat_sse(events, chunks, decision, include_usage=call.include_usage)
