"""``POST /v1/completions`` as an ``Endpoint``: parse the request, render its outcome.

What the request may hold and how a scoring request differs is told in ``schema``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from core.request import Decision, GenRequest
from core.result import PolicyResult
from server.api.common.render import ttc_body, usage_body
from server.api.completions.render import base_body, choice_body
from server.api.completions.schema import CompletionRequest
from server.api.completions.stream import completion_sse
from server.body import decode
from server.endpoint import Call, Event, request_options


class CompletionsEndpoint:
    name: ClassVar[str] = "completions"
    id_prefix: ClassVar[str] = "cmpl-"

    async def parse(self, raw: bytes, request_id: str, deadline: float, owner: str) -> Call:
        body = await decode(raw, CompletionRequest)
        options = request_options(body.ttc)
        req = GenRequest(
            messages=({"role": "user", "content": body.text},),
            sampling=body.sampling(),
            passthrough=body.passthrough(),
            model=body.model,
            ttc=options.ttc,
            request_id=request_id,
            deadline=deadline,
            body_bytes=len(raw),
            prompt=body.text,
        )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return Call(
            req,
            stream=body.stream,
            include_usage=include_usage,
            cache=options.cache,
            owner=owner,
            wire=body,
        )

    async def render(self, call: Call, decision: Decision, result: PolicyResult) -> dict[str, Any]:
        body = base_body(call, decision)
        body["choices"] = [choice_body(call, c) for c in result.choices]
        body["usage"] = usage_body(result.usage, result.report)
        body["ttc"] = ttc_body(decision, result.report)
        return body

    def render_stream(
        self, call: Call, decision: Decision, events: AsyncIterator[Event | None]
    ) -> AsyncIterator[bytes]:
        return completion_sse(call, decision, events)
