"""Tool calling through the gateway against the real worker (SmolLM2-135M, pythonic parser).

SmolLM2-135M does not choose to call a tool on its own (with ``tool_choice: auto`` it answers in
text), so calls come from a named ``tool_choice``, which vLLM answers with structured-output
decoding: a real, deterministic call. ``auto`` still shows the worker runs a tool-call parser
(without one vLLM refuses it with a 400). Vote splits and malformed arguments cannot be made on
demand with a real model; they are unit tests (tests/unit/test_tool_votes.py).
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from policies.tool_votes import canonical
from policies.voting import NO_ANSWER
from tests.integration.conftest import WORKER_KEY_ENV, GatewayFactory, gateway_config

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALL_WEATHER: Any = {"type": "function", "function": {"name": "get_weather"}}
QUESTION: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def sdk(worker_url: str, start_gateway: GatewayFactory) -> openai.OpenAI:
    keyed = {"endpoints": [worker_url], "api_key_env": WORKER_KEY_ENV}
    tools = {"model": "small", **keyed, "profile": "smollm2"}
    plain = {"model": "large", **keyed}  # the same worker, declared plain
    url = start_gateway(gateway_config(worker_url, tiers={"small": tools, "plain": plain}))
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_a_call_comes_back_the_result_goes_back_and_an_answer_arrives(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="small",
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice=CALL_WEATHER,
        max_tokens=40,
        temperature=0,
    )
    message = reply.choices[0].message
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    result = {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}
    turn: Any = [*QUESTION, message.model_dump(exclude_none=True), result]
    final = sdk.chat.completions.create(
        model="small",
        messages=turn,
        tools=[WEATHER],
        tool_choice="none",
        max_tokens=30,
        temperature=0,
    )
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls


def test_a_streamed_call_arrives_in_argument_deltas(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="small",
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice=CALL_WEATHER,
        max_tokens=40,
        temperature=0,
        stream=True,
    )
    names, pieces = set(), []
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                if delta.function and delta.function.name:
                    names.add(delta.function.name)
                if delta.function and delta.function.arguments:
                    pieces.append(delta.function.arguments)
    assert names == {"get_weather"} and len(pieces) > 1  # streamed, not in one piece
    assert isinstance(json.loads("".join(pieces))["city"], str)


def test_auto_reaches_a_worker_with_a_parser(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="small",
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice="auto",
        max_tokens=16,
    )
    assert reply.choices[0].message.content or reply.choices[0].message.tool_calls


def test_a_tier_without_tools_is_a_400_naming_it(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="plain", messages=QUESTION, tools=[WEATHER])
    assert "the tier 'plain' cannot call tools" in info.value.message
    assert info.value.code == "tools_not_supported"


def test_samples_vote_on_the_call(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="small",
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice=CALL_WEATHER,
        max_tokens=40,
        temperature=0.8,
        extra_body={"ttc": {"policy": "adaptive_bon", "max_samples": 4}},
    )
    ttc: Any = reply.model_extra["ttc"]  # type: ignore[index]
    assert ttc["policy"] == "adaptive_bon"
    votes = ttc["votes"]
    assert sum(votes.values()) <= ttc["samples"]
    # an invalid call votes for nothing: it is counted in the no-answer bucket, not dropped
    assert all(key.startswith("get_weather(") for key in votes if key != NO_ANSWER)
    call: Any = (reply.choices[0].message.tool_calls or [])[0]
    assert f"get_weather({canonical(json.loads(call.function.arguments))})" in votes
    assert reply.usage is not None and reply.usage.completion_tokens >= ttc["samples"]
