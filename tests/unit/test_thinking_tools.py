"""A reasoning tier under a gateway-forced thinking budget that calls a tool within it: the
call is the answer (stream and not), never replaced by a forced text answer.

The backend is a fake speaking vLLM's wire form (through the real chunk and completion
parsers): a worker cannot be made to think and then call a tool on demand.
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest

from server.app import create_app
from server.config import settings_from_dict
from workers.client import parse_chunk, parse_completion

CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ASK: Any = [{"role": "user", "content": "Weather in Paris?"}]
USAGE = {"prompt_tokens": 20, "completion_tokens": 12}


class ThinksThenCalls:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def chat(self, tier: str, body: dict[str, Any], *, affinity: str | None = None) -> Any:
        self.calls.append(body)
        message = {
            "role": "assistant",
            "reasoning": "I should call the tool.",
            "content": None,
            "tool_calls": [CALL],
        }
        return parse_completion(
            {
                "model": "m",
                "usage": USAGE,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            }
        )

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Any:
        self.calls.append(body)
        opening = {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
        rest = {"index": 0, "function": {"arguments": '{"city": "Paris"}'}}
        for delta, finish in [
            ({"role": "assistant", "content": ""}, None),
            ({"reasoning": "I should call the tool."}, None),
            ({"tool_calls": [opening]}, None),
            ({"tool_calls": [rest]}, None),
            ({}, "tool_calls"),
        ]:
            for parsed in parse_chunk(
                {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            ):
                yield parsed
        for parsed in parse_chunk({"choices": [], "usage": USAGE}):
            yield parsed


def client() -> tuple[openai.AsyncOpenAI, ThinksThenCalls]:
    backend = ThinksThenCalls()
    tiers = {"r": {"model": "m", "endpoints": ["http://127.0.0.1:9"], "profile": "qwen3"}}
    app = create_app(
        settings_from_dict({"tiers": tiers, "router": {"probe": {"mode": "never"}}}),
        backend=backend,
    )
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(
        base_url="http://gw/v1", api_key="x", http_client=http, max_retries=0
    ), backend


@pytest.mark.parametrize("n", [1, 2])
async def test_a_tool_call_within_the_budget_is_the_answer(n: int) -> None:
    sdk, backend = client()
    reply = await sdk.chat.completions.create(
        model="r", messages=ASK, tools=TOOLS, n=n, extra_body={"ttc": {"policy": "single"}}
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and choice.message.tool_calls[0].id == "call_1"
    assert len(backend.calls) == 1  # no forced answer continuation
    assert "forced by the gateway" in " ".join(reply.model_extra["ttc"]["reasons"])  # type: ignore[index]


async def test_a_streamed_tool_call_within_the_budget_is_the_answer() -> None:
    sdk, backend = client()
    stream = await sdk.chat.completions.create(
        model="r", messages=ASK, tools=TOOLS, stream=True, extra_body={"ttc": {"policy": "single"}}
    )
    chunks = [c async for c in stream]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "call_1" and calls[0].function is not None
    assert (
        "".join(tc.function.arguments or "" for tc in calls if tc.function) == '{"city": "Paris"}'
    )
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]
    assert not any(c.choices and c.choices[0].delta.content for c in chunks)
    assert len(backend.calls) == 1
