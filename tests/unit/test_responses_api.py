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

WEATHER: Any = {"type": "function", "name": "get_weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}  # fmt: skip


def settings(**extra: Any) -> Settings:
    return settings_from_dict({
        # llama3: a profile whose workers parse tool calls (a plain tier refuses tools)
        "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"],
                            "profile": "llama3"}},
        "router": {"probe": {"mode": "never"}}, **extra,
    })  # fmt: skip


def sdk(app: FastAPI, key: str = "x") -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key=key, http_client=http,
                              max_retries=0)  # fmt: skip


def paris() -> ScriptedBackend:
    return ScriptedBackend(lambda tier, body: ["Paris"])


async def test_a_string_input_gets_a_message_with_output_text_usage_and_ttc() -> None:
    backend = paris()
    app = create_app(settings(), backend=backend)
    response = await sdk(app).responses.create(
        model="auto", input="Capital of France?", instructions="Answer in one word.",
        max_output_tokens=16, extra_body={"ttc": {"policy": "single"}},
    )  # fmt: skip
    assert response.output_text == "Paris"
    assert response.status == "completed" and response.object == "response"
    assert response.id.startswith("resp_")
    assert response.usage is not None and response.usage.output_tokens == 1
    assert response.usage.input_tokens == 10
    assert response.model_extra["ttc"]["policy"] == "single"  # type: ignore[index]
    _, body = backend.calls[0]
    assert body["messages"] == [{"role": "system", "content": "Answer in one word."},
                                {"role": "user", "content": "Capital of France?"}]  # fmt: skip
    assert body["max_tokens"] == 16


async def test_previous_response_id_continues_the_conversation_and_get_delete_work() -> None:
    backend = paris()
    app = create_app(settings(), backend=backend)
    client = sdk(app)
    first = await client.responses.create(model="auto", input="Capital of France?",
                                          instructions="Be brief.")  # fmt: skip
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
    auth = {"enabled": True, "redis_keys": False,
            "keys": [{"name": "a", "key_env": "KEY_A"}, {"name": "b", "key_env": "KEY_B"}]}
    app = create_app(settings(auth=auth), backend=paris())
    mine = await sdk(app, "secret-a").responses.create(model="auto", input="hi")
    with pytest.raises(openai.NotFoundError):
        await sdk(app, "secret-b").responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        await sdk(app, "secret-b").responses.delete(mine.id)
    with pytest.raises(openai.BadRequestError):
        await sdk(app, "secret-b").responses.create(model="auto", input="x",
                                                    previous_response_id=mine.id)  # fmt: skip
    assert (await sdk(app, "secret-a").responses.retrieve(mine.id)).output_text == "Paris"
    assert hashlib.sha256(b"secret-a").hexdigest() not in str(mine.model_dump())


async def test_the_stream_helper_gets_typed_events_in_order() -> None:
    backend = ScriptedBackend(lambda tier, body: ["The capital is Paris"])
    app = create_app(settings(), backend=backend)
    async with sdk(app).responses.stream(model="auto", input="Capital of France?",
                                         extra_body={"ttc": {"policy": "single"}}) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]  # fmt: skip
    assert kinds.count("response.output_text.delta") == 4
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]  # fmt: skip
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
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="auto", input="hi", temperature=cast(Any, "0.5"))
    assert str(info.value.body["param"]).startswith("temperature")  # type: ignore[index]


class CallsTheWeather(ScriptedBackend):
    """Answers with a tool call, as vLLM with a tool-call parser does."""

    async def chat(self, tier: str, body: dict[str, Any], *, affinity: str | None = None
                   ) -> Completion:  # fmt: skip
        self.calls.append((tier, body))
        call = {"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        raw = {"message": {"role": "assistant", "content": None, "tool_calls": [call]}}
        choice = Choice(index=0, text="", finish_reason="tool_calls", raw=raw)
        return Completion(choices=(choice,), usage=TokenUsage(20, 9), model="m")


async def test_function_tools_give_function_call_items_and_outputs_round_trip() -> None:
    backend = CallsTheWeather(lambda tier, body: [""])
    client = sdk(create_app(settings(), backend=backend))
    response = await client.responses.create(
        model="auto", input="Weather in Paris?", tools=[WEATHER], tool_choice="auto",
    )  # fmt: skip
    _, body = backend.calls[0]
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tool_choice"] == "auto"
    assert response.model_extra["ttc"]["policy"] == "single"  # type: ignore[index]
    call = response.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id == "call_1" and call.arguments == '{"city": "Paris"}'
    await client.responses.create(
        model="auto", previous_response_id=response.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "18C, sunny"}],
    )  # fmt: skip
    _, body = backend.calls[-1]
    assert body["messages"][-2]["tool_calls"][0]["id"] == "call_1"
    assert body["messages"][-1] == {"role": "tool", "tool_call_id": "call_1",
                                    "content": "18C, sunny"}  # fmt: skip


class DiesMidStream(ScriptedBackend):
    async def stream_chat(self, tier: str, body: dict[str, Any], *, affinity: str | None = None
                          ) -> Any:  # fmt: skip
        yield Delta(text="Par")
        raise UpstreamUnavailable("the worker died", retry_after=1)


async def test_a_failure_mid_stream_ends_with_error_and_response_failed() -> None:
    client = sdk(create_app(settings(), backend=DiesMidStream(lambda t, b: [""])))
    stream = await client.responses.create(model="auto", input="hi", stream=True,
                                           extra_body={"ttc": {"policy": "single"}})
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error is not None and "worker died" in failed.response.error.message
