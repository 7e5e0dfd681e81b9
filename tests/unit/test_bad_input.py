"""The bad-input corpus: every body that once gave a 500, or was accepted where OpenAI refuses
it, is a 400 ``invalid_request_error`` naming the field, and is settled like any other error.

Each case goes through the in-process app as raw bytes (a lone surrogate, NaN or 1,000 levels
of nesting cannot be produced by a well-behaved JSON encoder); after each, the in-flight gauge
is back at 0 and the request is counted once under ``ttc_requests_total{status="400"}``. The
valid shapes the official SDK sends stay accepted.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest
from fastapi import FastAPI

from server.app import create_app
from tests.fakes import ScriptedBackend
from tests.unit.test_lifecycle import client_for, counted, in_flight, settings

HI = '[{"role": "user", "content": "hi"}]'
DEEP = "[" * 1000 + "]" * 1000
NESTED_100 = '{"a": ' * 100 + "1" + "}" * 100


def body(**fields: str) -> bytes:
    """A chat body whose fields are given as raw JSON text (so they may be invalid JSON)."""
    fields.setdefault("model", '"auto"')
    fields.setdefault("messages", HI)
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()


def message(content: str, role: str = "user") -> str:
    return f'[{{"role": "{role}", "content": {content}}}]'


def tool(function: str) -> str:
    return f'[{{"type": "function", "function": {function}}}]'


# (case id, raw body, the param the 400 must name)
DEPTH = [
    ("deep-content", body(messages=message(DEEP)), "messages.0.content"),
    (
        "deep-tool-schema",
        body(tools=tool('{"name": "f", "parameters": ' + DEEP + "}")),
        "tools.0.function",
    ),
    ("deep-ttc", body(ttc='{"policy": ' + DEEP + "}"), "ttc.policy.0"),
    (
        "deep-response-format",
        body(
            response_format='{"type": "json_schema", "json_schema": '
            '{"name": "x", "schema": ' + NESTED_100 + "}}"
        ),
        "response_format.json_schema.schema",
    ),
    ("deep-vllm-extra", body(guided_json=NESTED_100), "guided_json.a.a"),
    ("deep-stream", body(stream="true", messages=message(DEEP)), "messages.0.content"),
]
SURROGATES = [
    ("lone-high", body(messages=message(r'"\ud800"')), "messages.0.content"),
    ("lone-low", body(messages=message(r'"x\udc00y"')), "messages.0.content"),
    ("reversed-pair", body(messages=message(r'"\ude00\ud83d"')), "messages.0.content"),
    (
        "system",
        body(
            messages='[{"role": "system", "content": "\\ud800"}, {"role": "user", "content": "hi"}]'
        ),
        "messages.0.content",
    ),
    (
        "content-part",
        body(messages=message(r'[{"type": "text", "text": "a\uDBFF"}]')),
        "messages.0.content.0.text",
    ),
    ("stream", body(stream="true", messages=message(r'"\ud800"')), "messages.0.content"),
    ("model", body(model=r'"auto\ud800"'), "model"),
    ("stop", body(stop=r'["ok", "\ud800"]'), "stop.1"),
    ("tool-name", body(tools=tool(r'{"name": "\ud800"}')), "tools.0.function.name"),
    ("ttc", body(ttc=r'{"policy": "\ud800"}'), "ttc.policy"),
    ("key", body(metadata=r'{"\ud800": "x"}'), "metadata"),
]
NUMBERS = [
    ("nan-temperature", body(temperature="NaN"), "temperature"),
    ("infinity-top-p", body(top_p="Infinity"), "top_p"),
    ("nan-logit-bias", body(logit_bias='{"50256": NaN}'), "logit_bias.50256"),
    ("minus-infinity-logit-bias", body(logit_bias='{"1": -Infinity}'), "logit_bias.1"),
    ("float-overflow", body(ttc='{"max_cost": 1e400}'), "ttc.max_cost"),
    ("int-past-parser-limit", body(max_tokens="1" * 5000), "max_tokens"),
    ("max-tokens-1e30", body(max_tokens=str(10**30)), "max_tokens"),
    ("max-completion-tokens-huge", body(max_completion_tokens=str(2**40)), "max_completion_tokens"),
    ("seed-2^70", body(seed=str(2**70)), "seed"),
    ("seed-minus-2^70", body(seed=str(-(2**70))), "seed"),
    ("n-huge", body(n=str(10**30)), "n"),
    ("logit-bias-range", body(logit_bias='{"1": 101}'), "logit_bias.1"),
]
TYPES = [
    ("temperature-string", body(temperature='"0.5"'), "temperature"),
    ("temperature-bool", body(temperature="true"), "temperature"),
    ("n-string", body(n='"2"'), "n"),
    ("n-float", body(n="2.5"), "n"),
    ("max-tokens-string", body(max_tokens='"16"'), "max_tokens"),
    ("stream-string", body(stream='"yes"'), "stream"),
    ("stream-int", body(stream="1"), "stream"),
    ("seed-bool", body(seed="true"), "seed"),
    ("logprobs-string", body(logprobs='"yes"'), "logprobs"),
    ("top-p-string", body(top_p='"1"'), "top_p"),
    ("top-logprobs-string", body(logprobs="true", top_logprobs='"2"'), "top_logprobs"),
    ("presence-penalty-string", body(presence_penalty='"0"'), "presence_penalty"),
    ("stop-int", body(stop="5"), "stop"),
    ("stop-list-of-int", body(stop='["a", 1]'), "stop.1"),
    ("model-int", body(model="5"), "model"),
    ("messages-string", body(messages='"hi"'), "messages"),
    ("message-string", body(messages='["hi"]'), "messages.0"),
    ("role-int", body(messages='[{"role": 5, "content": "hi"}]'), "messages.0.role"),
    ("content-int", body(messages=message("5")), "messages.0.content"),
    (
        "content-part-text-int",
        body(messages=message('[{"type": "text", "text": 5}]')),
        "messages.0.content.0.text",
    ),
    (
        "stream-options",
        body(stream="true", stream_options='{"include_usage": "yes"}'),
        "stream_options.include_usage",
    ),
    ("reasoning-effort-int", body(reasoning_effort="1"), "reasoning_effort"),
    ("ttc-string", body(ttc='"x"'), "ttc"),
    ("user-int", body(user="5"), "user"),
    ("metadata-value-int", body(metadata='{"a": 1}'), "metadata.a"),
    ("store-string", body(store='"no"'), "store"),
    ("parallel-tool-calls-int", body(parallel_tool_calls="1"), "parallel_tool_calls"),
    ("tools-string", body(tools='"x"'), "tools"),
    ("tools-item-int", body(tools="[1]"), "tools.0"),
    ("tool-type", body(tools='[{"type": "retrieval"}]'), "tools.0.type"),
    ("tool-name-int", body(tools=tool('{"name": 5}')), "tools.0.function.name"),
    (
        "tool-parameters-list",
        body(tools=tool('{"name": "f", "parameters": []}')),
        "tools.0.function.parameters",
    ),
    ("tool-choice-int", body(tool_choice="1"), "tool_choice"),
    ("tool-choice-word", body(tool_choice='"always"'), "tool_choice"),
    ("tool-choice-no-function", body(tool_choice='{"type": "function"}'), "tool_choice.function"),
    ("response-format-int", body(response_format="1"), "response_format"),
    ("response-format-type", body(response_format='{"type": "xml"}'), "response_format.type"),
    ("logit-bias-string", body(logit_bias='"x"'), "logit_bias"),
    ("logit-bias-value-string", body(logit_bias='{"1": "x"}'), "logit_bias.1"),
    ("logit-bias-key-not-a-token", body(logit_bias='{"abc": 1}'), "logit_bias.abc"),
]
PARSING = [
    (
        "invalid-utf8",
        b'{"model": "auto", "messages": [{"role": "user", "content": "a\xff"}]}',
        "messages.0.content",
    ),
    (
        "truncated-content",
        b'{"model": "auto", "messages": [{"role": "user", "content": "a',
        "messages.0.content",
    ),
]
CORPUS = DEPTH + SURROGATES + NUMBERS + TYPES + PARSING


def app() -> FastAPI:
    return create_app(settings(), backend=ScriptedBackend(lambda tier, body: ["Paris"]))


@pytest.fixture(scope="module")
def gateway() -> FastAPI:
    """One app for the corpus (building one costs ~0.2 s); each case checks its own deltas."""
    return app()


def http(app: FastAPI) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gateway")


@pytest.mark.parametrize(("raw", "param"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
async def test_bad_input_is_a_400_naming_the_field(
    gateway: FastAPI, raw: bytes, param: str
) -> None:
    refused = counted(gateway, "400")
    reply = await http(gateway).post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error")
    assert param in error["message"]
    assert (in_flight(gateway), counted(gateway, "400")) == (0, refused + 1)


def test_the_corpus_bodies_are_what_they_claim() -> None:
    """Guards the corpus itself: the type and range cases are valid JSON (so they test the
    schema, not the parser), and the depth cases really nest past the bound."""
    for _, raw, _ in TYPES:
        json.loads(raw)
    assert all(raw.count(b"[") + raw.count(b"{") > 64 for _, raw, _ in DEPTH)


async def test_the_openai_sdk_gets_a_bad_request_error_naming_the_field() -> None:
    gateway = app()
    extra: Any = {"temperature": "0.5"}
    with pytest.raises(openai.BadRequestError) as info:
        await client_for(gateway).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], extra_body=extra
        )
    assert info.value.param == "temperature" and info.value.code == "invalid_value"
    assert (in_flight(gateway), counted(gateway, "400")) == (0, 1)


VALID: list[dict[str, Any]] = [
    {"temperature": 1, "top_p": 1, "max_tokens": 16, "seed": 7, "n": 1},
    {"temperature": 0.5, "max_completion_tokens": 16, "seed": -(2**63), "stop": ["\n", "."]},
    {"logprobs": True, "top_logprobs": 2, "presence_penalty": 0, "frequency_penalty": 0.5},
    {"logit_bias": {"50256": -100, "12": 1.5}, "user": "u", "metadata": {"k": "v"}},
    {
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "parameters": {"type": "object"}, "strict": True},
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": False,
    },
    {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": {"type": "object"}},
        }
    },
    {"response_format": {"type": "json_object"}, "tool_choice": "auto", "store": False},
    {"top_k": 5, "min_p": 0.1, "stream": False, "reasoning_effort": "low"},
]


@pytest.mark.parametrize("fields", VALID)
async def test_valid_requests_the_sdk_sends_stay_accepted(fields: dict[str, Any]) -> None:
    backend = ScriptedBackend(lambda tier, body: ["Paris"])
    gateway = create_app(settings(), backend=backend)
    messages: Any = [{"role": "user", "content": "What is the capital of France? \U0001f600"}]
    reply = await client_for(gateway).chat.completions.create(
        model="auto", messages=messages, extra_body=fields
    )
    assert reply.choices[0].message.content == "Paris"
    sent = backend.calls[-1][1]
    assert sent["messages"][-1]["content"] == messages[0]["content"]
    for key in ("tools", "tool_choice", "response_format", "logit_bias", "top_k", "metadata"):
        if key in fields:
            assert sent[key] == fields[key]  # forwarded as the client sent it


async def test_an_escaped_surrogate_pair_is_valid_text() -> None:
    backend = ScriptedBackend(lambda tier, body: ["Paris"])
    gateway = create_app(settings(), backend=backend)
    raw = body(messages=message(r'"smile \ud83d\ude00"'))
    reply = await http(gateway).post("/v1/chat/completions", content=raw)
    assert reply.status_code == 200, reply.text
    assert backend.calls[-1][1]["messages"][0]["content"] == "smile \U0001f600"
