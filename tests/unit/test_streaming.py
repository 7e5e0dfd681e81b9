from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from core.backend import Delta
from core.errors import TtcError, UpstreamError
from core.request import Decision
from core.result import PolicyResult, ResultChoice
from core.usage import TokenUsage, UsageLedger
from policies.single import SingleParams
from server.api.chat.render import ChunkFactory
from server.api.chat.stream import chat_sse
from server.api.common.stream import with_keepalive
from server.endpoint import Event

PLAN = Decision(tier="t", params=SingleParams())


def result() -> PolicyResult:
    ledger = UsageLedger()
    ledger.add("sample", "t", TokenUsage(5, 2))
    return PolicyResult((ResultChoice(0, "ab", "stop"),), ledger, {"samples": 1})


async def collect(
    events: AsyncIterator[Event], include_usage: bool, keepalive: float = 5.0
) -> tuple[list[Any], list[TtcError | None]]:
    """The chat SSE of ``events``, and how each ended (``None``: it ended with a result)."""
    errors: list[TtcError | None] = []

    async def watched() -> AsyncIterator[Event]:
        try:
            async for event in events:
                if isinstance(event, PolicyResult):
                    errors.append(None)
                yield event
        except TtcError as exc:
            errors.append(exc)
            raise

    source = watched()
    first = asyncio.ensure_future(anext(source))
    ticking = with_keepalive(first, source, keepalive)
    parts = [
        part
        async for part in chat_sse(
            ticking,
            ChunkFactory("id", "t", include_usage=include_usage),
            PLAN,
            include_usage=include_usage,
        )
    ]
    out: list[Any] = []
    for part in b"".join(parts).split(b"\n\n"):
        if part.startswith(b"data: [DONE]"):
            out.append("DONE")
        elif part.startswith(b"data: "):
            out.append(json.loads(part[6:]))
        elif part.startswith(b":"):
            out.append("KEEPALIVE")
    return out, errors


async def normal() -> AsyncIterator[Event]:
    yield Delta(text="a")
    yield Delta(text="b")
    yield Delta(finish_reason="stop")
    yield result()


async def test_ttc_rides_on_the_finish_chunk_without_usage_chunk() -> None:
    out, errors = await collect(normal(), include_usage=False)
    assert out[-1] == "DONE"
    assert errors == [None]
    finish = out[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["ttc"] == {"tier": "t", "policy": "single", "samples": 1}
    assert all(c["choices"] for c in out[:-1])


async def test_include_usage_adds_a_final_usage_chunk() -> None:
    out, _ = await collect(normal(), include_usage=True)
    chunks = [c for c in out if isinstance(c, dict)]
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])  # as OpenAI sends
    usage_chunk = out[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 2
    assert usage_chunk["usage"]["ttc_details"][0]["kind"] == "sample"


async def failing() -> AsyncIterator[Event]:
    yield Delta(text="a")
    raise UpstreamError("worker died")


async def test_error_mid_stream_sends_error_event_then_done() -> None:
    out, errors = await collect(failing(), include_usage=False)
    assert out[-2]["error"]["message"] == "worker died"
    assert out[-1] == "DONE"
    assert isinstance(errors[0], UpstreamError)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in out[1:-2]) == "a"


async def slow() -> AsyncIterator[Event]:
    await asyncio.sleep(0.25)
    yield Delta(text="late")
    yield result()


async def test_keepalive_comments_while_the_policy_works() -> None:
    out, _ = await collect(slow(), include_usage=False, keepalive=0.05)
    assert "KEEPALIVE" in out
    assert out[-1] == "DONE"


async def two_choices_one_answer() -> AsyncIterator[Event]:
    """A vote asked for n=2 that drew one distinct answer: one choice comes."""
    yield Delta(index=0, text="a")
    yield Delta(index=0, finish_reason="stop")
    yield result()


async def two_choices() -> AsyncIterator[Event]:
    yield Delta(index=0, text="a")
    yield Delta(index=1, text="b")
    yield Delta(index=0, finish_reason="stop")
    yield Delta(index=1, finish_reason="stop")
    yield result()


async def test_every_choice_announced_is_finished_and_every_finished_one_announced() -> None:
    for events, indices in ((two_choices_one_answer(), {0}), (two_choices(), {0, 1})):
        out, _ = await collect(events, include_usage=False)
        choices = [c for chunk in out if isinstance(chunk, dict) for c in chunk["choices"]]
        roles = [c["index"] for c in choices if c["delta"].get("role") == "assistant"]
        finished = [c["index"] for c in choices if c["finish_reason"]]
        assert sorted(roles) == sorted(finished) == sorted(indices)
        first = {i: next(c for c in choices if c["index"] == i) for i in indices}
        assert all(c["delta"].get("role") == "assistant" for c in first.values())
