"""``/v1/responses`` in process: the official SDK against the app with a scripted backend.

The backend is a fake because what is asserted is the gateway's own translation (input items
to chat messages, answers to output items and typed events, the store and its ownership);
tests/integration/test_responses.py runs the same calls against the real vLLM worker.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

import httpx2
import openai
import pytest
from fastapi import FastAPI

from core.backend import Choice, Completion, Delta
from core.errors import UpstreamUnavailable
from core.usage import TokenUsage
from server.app import create_app
from server.config import Settings, settings_from_dict
from tests.fakes import ScriptedBackend

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def settings(**extra: Any) -> Settings:
    return settings_from_dict(
        {
            # llama3: a profile whose workers parse tool calls (a plain tier refuses tools)
            "tiers": {
                "small": {"model": "m", "endpoints": ["http://127.0.0.1:9"], "profile": "llama3"}
            },
            "router": {"probe": {"mode": "never"}},
            **extra,
        }
    )


def sdk(app: FastAPI, key: str = "x") -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key=key, http_client=http, max_retries=0)


def paris() -> ScriptedBackend:
    return ScriptedBackend(lambda tier, body: ["Paris"])


async def test_a_string_input_gets_a_message_with_output_text_usage_and_ttc() -> None:
    backend = paris()
    app = create_app(settings(), backend=backend)
    response = await sdk(app).responses.create(
        model="auto",
        input="Capital of France?",
        instructions="Answer in one word.",
        max_output_tokens=16,
        extra_body={"ttc": {"policy": "single"}},
    )
    assert response.output_text == "Paris"
    assert response.status == "completed" and response.object == "response"
    assert response.id.startswith("resp_")
    assert response.usage is not None and response.usage.output_tokens == 1
    assert response.usage.input_tokens == 10
    assert response.model_extra["ttc"]["policy"] == "single"  # type: ignore[index]
    _, body = backend.calls[0]
    assert body["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert body["max_tokens"] == 16


async def test_previous_response_id_continues_the_conversation_and_get_delete_work() -> None:
    backend = paris()
    app = create_app(settings(), backend=backend)
    client = sdk(app)
    first = await client.responses.create(
        model="auto", input="Capital of France?", instructions="Be brief."
    )
    second = await client.responses.create(
        model="auto", input="And of Italy?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    _, body = backend.calls[-1]
    assert body["messages"] == [  # the instructions of the first turn are not carried over
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "And of Italy?"},
    ]
    fetched = await client.responses.retrieve(first.id)
    assert fetched.output_text == "Paris" and fetched.id == first.id
    await client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="auto", input="x", previous_response_id=first.id)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]


async def test_a_long_agent_loop_with_big_tool_outputs_stays_continuable() -> None:
    """Each stored response keeps its own turn: 8 turns of 300 KB tool outputs (2.4 MB of
    conversation) all continue, and the worker gets the whole conversation in order."""
    backend = paris()
    client = sdk(create_app(settings(), backend=backend))
    previous, sent = None, []
    for turn in range(8):
        output = f"{turn} " + "sunny " * 50_000
        items: Any = [
            {"type": "message", "role": "user", "content": f"turn {turn}"},
            {"type": "function_call_output", "call_id": f"c{turn}", "output": output},
        ]
        response = await client.responses.create(
            model="auto", input=items, previous_response_id=previous
        )
        assert response.model_extra["store"] is True  # type: ignore[index]
        sent.append([m["content"] for m in backend.calls[-1][1]["messages"]])
        previous = response.id
    assert sent[-1][-2] == "turn 7" and sent[-1][-1].startswith("7 sunny")
    assert sent[-1][:-3] == sent[-2]  # the turn before, then its answer, then this input
    assert len(sent[-1]) == 8 * 3 - 1  # user, tool output, answer per turn (the last unanswered)
    assert sent[-1][2::3] == ["Paris"] * 7


async def test_a_deleted_response_in_the_chain_is_named_when_continuing() -> None:
    client = sdk(create_app(settings(), backend=paris()))
    first = await client.responses.create(model="auto", input="one")
    second = await client.responses.create(model="auto", input="two", previous_response_id=first.id)
    await client.responses.delete(first.id)
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="auto", input="three", previous_response_id=second.id)
    error = info.value.body
    assert error["param"] == "previous_response_id"  # type: ignore[index]
    assert first.id in error["message"] and second.id in error["message"]  # type: ignore[index]


async def test_a_turn_too_large_to_store_says_store_false() -> None:
    app = create_app(settings(responses={"max_bytes": 4096}), backend=paris())
    client = sdk(app)
    response = await client.responses.create(model="auto", input="x" * 10_000)
    assert response.model_extra["store"] is False  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)


async def test_store_false_keeps_nothing() -> None:
    app = create_app(settings(), backend=paris())
    client = sdk(app)
    response = await client.responses.create(model="auto", input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)


async def test_a_stored_response_is_visible_only_to_the_key_that_made_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEY_A", "secret-a")
    monkeypatch.setenv("KEY_B", "secret-b")
    auth = {
        "enabled": True,
        "redis_keys": False,
        "keys": [{"name": "a", "key_env": "KEY_A"}, {"name": "b", "key_env": "KEY_B"}],
    }
    app = create_app(settings(auth=auth), backend=paris())
    mine = await sdk(app, "secret-a").responses.create(model="auto", input="hi")
    with pytest.raises(openai.NotFoundError):
        await sdk(app, "secret-b").responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        await sdk(app, "secret-b").responses.delete(mine.id)
    with pytest.raises(openai.BadRequestError):
        await sdk(app, "secret-b").responses.create(
            model="auto", input="x", previous_response_id=mine.id
        )
    assert (await sdk(app, "secret-a").responses.retrieve(mine.id)).output_text == "Paris"
    assert hashlib.sha256(b"secret-a").hexdigest() not in str(mine.model_dump())


async def test_the_stream_helper_gets_typed_events_in_order() -> None:
    backend = ScriptedBackend(lambda tier, body: ["The capital is Paris"])
    app = create_app(settings(), backend=backend)
    async with sdk(app).responses.stream(
        model="auto", input="Capital of France?", extra_body={"ttc": {"policy": "single"}}
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") == 4
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text.strip() == "The capital is Paris"
    assert final.usage is not None and final.usage.output_tokens == 4


async def test_unknown_fields_and_background_are_refused_naming_them() -> None:
    client = sdk(create_app(settings(), backend=paris()))
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="auto", input="hi", extra_body={"frobnicate": 1})
    assert info.value.body["param"] == "frobnicate"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="auto", input="hi", background=True)
    assert "background" in info.value.message
    assert info.value.body["param"] == "background"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(
            model="auto",
            input="hi",
            tools=[WEATHER],
            tool_choice={"type": "function", "name": "nope"},
        )
    assert info.value.body["param"] == "tool_choice"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="auto", input="hi", temperature=cast(Any, "0.5"))
    assert str(info.value.body["param"]).startswith("temperature")  # type: ignore[index]


class CallsTheWeather(ScriptedBackend):
    """Answers with a tool call, as vLLM with a tool-call parser does."""

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.calls.append((tier, body))
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
        raw = {"message": {"role": "assistant", "content": None, "tool_calls": [call]}}
        choice = Choice(index=0, text="", finish_reason="tool_calls", raw=raw)
        return Completion(choices=(choice,), usage=TokenUsage(20, 9), model="m")


async def test_function_tools_give_function_call_items_and_outputs_round_trip() -> None:
    backend = CallsTheWeather(lambda tier, body: [""])
    client = sdk(create_app(settings(), backend=backend))
    response = await client.responses.create(
        model="auto",
        input="Weather in Paris?",
        tools=[WEATHER],
        tool_choice="auto",
    )
    _, body = backend.calls[0]
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tool_choice"] == "auto"
    assert response.model_extra["ttc"]["policy"] == "single"  # type: ignore[index]
    call = response.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id == "call_1" and call.arguments == '{"city": "Paris"}'
    await client.responses.create(
        model="auto",
        previous_response_id=response.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "18C, sunny"}],
    )
    _, body = backend.calls[-1]
    assert body["messages"][-2]["tool_calls"][0]["id"] == "call_1"
    assert body["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "18C, sunny",
    }


class DiesMidStream(ScriptedBackend):
    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Any:
        yield Delta(text="Par")
        raise UpstreamUnavailable("the worker died", retry_after=1)


async def test_a_failure_mid_stream_ends_with_error_and_response_failed() -> None:
    client = sdk(create_app(settings(), backend=DiesMidStream(lambda t, b: [""])))
    stream = await client.responses.create(
        model="auto", input="hi", stream=True, extra_body={"ttc": {"policy": "single"}}
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error is not None and "worker died" in failed.response.error.message


class ThinksAfterItStarts(ScriptedBackend):
    """Reasoning that arrives after the answer began (interleaved thinking, as harmony-style
    models can stream); a real worker does not do it on demand."""

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Any:
        yield Delta(text="Par")
        yield Delta(reasoning="hmm, the capital")
        yield Delta(text="is")
        yield Delta(finish_reason="stop")
        yield Delta(usage=TokenUsage(10, 3))


async def test_thinking_after_the_answer_began_keeps_the_stream_parseable() -> None:
    client = sdk(create_app(settings(), backend=ThinksAfterItStarts(lambda t, b: [""])))
    async with client.responses.stream(
        model="auto", input="Capital of France?", extra_body={"ttc": {"policy": "single"}}
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    done = [e.output_index for e in events if e.type == "response.output_item.done"]
    assert added == done == list(range(len(added)))  # each index opened and closed once
    assert final.output_text == "Paris"
    kinds = [item.type for item in final.output]
    assert kinds[0] == "message"  # where the stream put it
    assert [item.type for item in events[-1].response.output] == kinds  # type: ignore[union-attr]


async def test_an_agent_loop_replayed_by_hand_keeps_one_assistant_turn() -> None:
    """Text the model said before its call, the call and its output, replayed as items (with
    the fields the SDK's own types carry): one assistant turn upstream, then the tool."""
    backend = paris()
    client = sdk(create_app(settings(), backend=backend))
    items: Any = [
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "Weather?",
                    "prompt_cache_breakpoint": {"type": "ephemeral"},
                }
            ],
        },
        {"type": "message", "role": "assistant", "content": "Let me check."},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "namespace": "default",
        },
        {"type": "function_call_output", "call_id": "c1", "output": "18C", "name": "get_weather"},
    ]
    await client.responses.create(
        model="auto",
        input=items,
        tools=[WEATHER],
        include=["reasoning.encrypted_content"],
        prompt_cache_key="agent-7",
        safety_identifier="u-1",
        max_tool_calls=4,
    )
    messages = backend.calls[-1][1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["content"] == "Let me check."
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"input": [{"type": "message", "role": "bot", "content": "x"}]}, "input.0.role"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input.0.call_id"),
        ({"input": [{"type": "input_image", "image_url": "x"}]}, "input.0"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"include": ["message.output_text.logprobs"]}, "include.0"),
        ({"service_tier": "priority"}, "service_tier"),
        ({"truncation": "auto"}, "truncation"),
    ],
)
async def test_bad_input_items_and_options_name_the_field(extra: Any, param: str) -> None:
    client = sdk(create_app(settings(), backend=paris()))
    body = {"input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="auto", **body)
    assert info.value.body["param"] == param  # type: ignore[index]


async def test_every_openai_reasoning_effort_is_understood() -> None:
    client = sdk(create_app(settings(), backend=paris()))
    for effort in ("none", "xhigh", "max"):
        response = await client.responses.create(
            model="auto", input="hi", reasoning={"effort": effort}
        )
        reasons = " ".join(response.model_extra["ttc"]["reasons"])  # type: ignore[index]
        assert ("minimal" if effort == "none" else "high") in reasons


async def test_input_items_list_a_page_at_a_time_for_the_owner_only() -> None:
    app = create_app(
        settings(
            auth={
                "enabled": True,
                "keys": [
                    {"name": "a", "key_hash": hashlib.sha256(b"secret-a").hexdigest()},
                    {"name": "b", "key_hash": hashlib.sha256(b"secret-b").hexdigest()},
                ],
            }
        ),
        backend=CallsTheWeather(lambda t, b: [""]),
    )
    client = sdk(app, "secret-a")
    items: Any = [
        {"type": "message", "role": "user", "content": "Weather in Paris?"},
        {"type": "message", "role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "c0", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c0", "output": "18C"},
    ]
    response = await client.responses.create(model="auto", input=items, tools=[WEATHER])
    listed = await client.responses.input_items.list(response.id, order="asc")
    assert [i.type for i in listed.data] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
    ]
    newest = await client.responses.input_items.list(response.id, limit=2)
    assert [i.type for i in newest.data] == ["function_call_output", "function_call"]
    assert newest.has_more
    rest = await client.responses.input_items.list(response.id, limit=2, after=newest.data[-1].id)
    assert [i.type for i in rest.data] == ["message", "message"] and not rest.has_more
    with pytest.raises(openai.NotFoundError):
        await sdk(app, "secret-b").responses.input_items.list(response.id)
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.retrieve(response.id, stream=True)
    assert info.value.body["param"] == "stream"  # type: ignore[index]
