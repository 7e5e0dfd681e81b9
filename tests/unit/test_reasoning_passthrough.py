"""Thinking passes through as vLLM emits it, never mixed into ``content``, and is counted.

A scripted backend stands in for a worker with a reasoning parser: what is asserted is the
gateway's own rendering (chat and Responses, stream and not), ``ttc.include_reasoning`` and the
accounting; tests/integration covers the real worker's fields.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
from fastapi import FastAPI

from core.backend import Choice, Completion, Delta
from core.usage import TokenUsage
from server.app import create_app
from server.config import settings_from_dict
from tests.fakes import ScriptedBackend
from workers.client import parse_choice, parse_chunk, parse_usage

QUESTION: Any = [{"role": "user", "content": "What is 2 + 3?"}]
THOUGHT = "Two plus three is five."
SINGLE: Any = {"ttc": {"policy": "single"}}


class Thinks(ScriptedBackend):
    """Answers "5" after thinking, as vLLM with ``--reasoning-parser`` splits it."""

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        raw = {"message": {"role": "assistant", "content": "5", "reasoning": THOUGHT}}
        choice = Choice(index=0, text="5", finish_reason="stop", reasoning=THOUGHT, raw=raw)
        return Completion(choices=(choice,), usage=TokenUsage(9, 7, 6), model="m")

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        for word in THOUGHT.split(" "):
            yield Delta(reasoning=word + " ", raw={"delta": {"reasoning": word + " "}})
        yield Delta(text="5", raw={"delta": {"content": "5"}})
        yield Delta(finish_reason="stop")
        yield Delta(usage=TokenUsage(9, 7, 6))


def sdk() -> openai.AsyncOpenAI:
    settings = settings_from_dict(
        {
            "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
            "router": {"probe": {"mode": "never"}},
        }
    )
    app: FastAPI = create_app(settings, backend=Thinks(lambda t, b: ["5"]))
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key="x", http_client=http)


async def test_chat_message_carries_reasoning_apart_from_content_and_counts_it() -> None:
    reply = await sdk().chat.completions.create(model="auto", messages=QUESTION, extra_body=SINGLE)
    message = reply.choices[0].message
    assert message.content == "5"
    assert (message.model_extra or {})["reasoning"] == THOUGHT
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.reasoning_tokens == 6


async def test_chat_stream_sends_delta_reasoning_then_content() -> None:
    stream = await sdk().chat.completions.create(
        model="auto",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=SINGLE,
    )
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thinking = "".join((d.model_extra or {}).get("reasoning") or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert thinking.strip() == THOUGHT and content == "5"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 6


async def test_include_reasoning_false_drops_the_thinking_everywhere() -> None:
    options: Any = {"ttc": {"policy": "single", "include_reasoning": False}}
    client = sdk()
    reply = await client.chat.completions.create(
        model="auto", messages=QUESTION, extra_body=options
    )
    assert "reasoning" not in (reply.choices[0].message.model_extra or {})
    assert reply.usage is not None and reply.usage.completion_tokens == 7  # still billed
    stream = await client.chat.completions.create(
        model="auto", messages=QUESTION, stream=True, extra_body=options
    )
    async for chunk in stream:
        for choice in chunk.choices:
            assert "reasoning" not in (choice.delta.model_extra or {})
    response = await client.responses.create(model="auto", input="2 + 3?", extra_body=options)
    assert [item.type for item in response.output] == ["message"]


async def test_responses_put_a_reasoning_item_before_the_message() -> None:
    client = sdk()
    response = await client.responses.create(model="auto", input="2 + 3?", extra_body=SINGLE)
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output_text == "5"
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 6
    async with client.responses.stream(model="auto", input="2 + 3?", extra_body=SINGLE) as s:
        kinds = [event.type async for event in s]
        final = await s.get_final_response()
    first_text = kinds.index("response.output_text.delta")
    assert (
        kinds.index("response.reasoning_text.delta")
        < kinds.index("response.reasoning_text.done")
        < first_text
    )
    assert [item.type for item in final.output] == ["reasoning", "message"]


def test_the_client_reads_reasoning_and_the_deprecated_reasoning_content() -> None:
    new = parse_choice(
        {"index": 0, "finish_reason": "stop", "message": {"content": "5", "reasoning": "think"}}
    )
    old = parse_choice(
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"content": "5", "reasoning_content": "think"},
        }
    )
    assert new.reasoning == old.reasoning == "think" and new.text == "5"
    [delta] = parse_chunk({"choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]})
    assert delta.reasoning == "hm" and delta.text == ""
    usage = parse_usage(
        {
            "prompt_tokens": 3,
            "completion_tokens": 8,
            "completion_tokens_details": {"reasoning_tokens": 5},
        }
    )
    assert usage == TokenUsage(3, 8, 5)
