"""Tool requests in the router: a tier that cannot call tools is refused (400 naming it) before
any worker call, ``model: auto`` moves them to a tier that can, and the policy they get."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from core.request import GenRequest
from server.app import create_app
from server.config import Settings, settings_from_dict
from tests.fakes import ScriptedBackend
from tests.unit.test_lifecycle import client_for
from tests.unit.test_tool_votes import WEATHER

QUESTION: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS: Any = [WEATHER]


def settings(**router: Any) -> Settings:
    endpoint = ["http://127.0.0.1:9"]
    return settings_from_dict(
        {
            "tiers": {
                "small": {"model": "s", "endpoints": endpoint},  # plain: no tools
                "large": {"model": "l", "endpoints": endpoint, "profile": "smollm2"},
            },
            "router": {
                "probe": {"mode": "never"},
                "bands": [{"name": "all", "tier": "small", "policy": "single"}],
                **router,
            },
        }
    )


async def ask(backend: ScriptedBackend, model: str, settings_: Settings, **fields: Any) -> Any:
    client = client_for(create_app(settings_, backend=backend))
    return await client.chat.completions.create(
        model=model, messages=QUESTION, tools=TOOLS, **fields
    )


async def test_tools_to_a_tier_without_tools_are_refused_naming_it() -> None:
    backend = ScriptedBackend(lambda tier, body: ["x"])
    with pytest.raises(openai.BadRequestError) as info:
        await ask(backend, "small", settings(), tool_choice="auto")
    assert "'small' cannot call tools" in info.value.message
    assert "large" in info.value.message  # where to send them instead
    assert info.value.param == "tools" and info.value.code == "tools_not_supported"
    assert backend.calls == []  # before any worker call


async def test_auto_sends_tool_requests_to_a_tier_that_can_and_says_so() -> None:
    backend = ScriptedBackend(lambda tier, body: ["x"])
    reply = await ask(backend, "auto", settings(), tool_choice="auto")
    ttc = reply.model_extra["ttc"]
    assert ttc["tier"] == "large" and ttc["policy"] == "single"
    assert any("tier small cannot call tools; routed to large" in r for r in ttc["reasons"])
    assert backend.calls[0][0] == "large" and backend.calls[0][1]["tool_choice"] == "auto"


async def test_tool_choice_none_needs_no_tool_tier() -> None:
    backend = ScriptedBackend(lambda tier, body: ["x"])
    reply = await ask(backend, "small", settings(), tool_choice="none")
    assert reply.model_extra["ttc"]["tier"] == "small"


async def test_no_tier_that_can_call_tools_is_a_400() -> None:
    only_plain = settings_from_dict(
        {"tiers": {"small": {"model": "s", "endpoints": ["http://127.0.0.1:9"]}}}
    )
    with pytest.raises(openai.BadRequestError) as info:
        await ask(ScriptedBackend(lambda tier, body: ["x"]), "auto", only_plain)
    assert "no configured tier can call tools" in info.value.message


async def test_pinned_adaptive_bon_votes_on_calls_else_tools_get_single() -> None:
    backend = ScriptedBackend(lambda tier, body: ["x"] * body.get("n", 1))
    pinned = await ask(
        backend,
        "large",
        settings(),
        extra_body={"ttc": {"policy": "adaptive_bon", "max_samples": 4}},
    )
    ttc = pinned.model_extra["ttc"]
    assert ttc["policy"] == "adaptive_bon" and ttc["votes"] == {"no call": ttc["samples"]}
    assert "tools: adaptive_bon samples vote on the calls" in ttc["reasons"]
    plain = await ask(backend, "large", settings(bands=[{"name": "all", "policy": "adaptive_bon"}]))
    assert plain.model_extra["ttc"]["policy"] == "single"
    configured = await ask(backend, "large", settings(tools={"policy": "adaptive_bon"}))
    assert configured.model_extra["ttc"]["policy"] == "adaptive_bon"


@pytest.mark.parametrize(
    ("passthrough", "single"),
    [
        ({"tools": TOOLS}, True),
        ({"tools": TOOLS, "tool_choice": "none"}, False),  # no call can come
        ({"response_format": {"type": "json_object"}}, True),
        ({"response_format": {"type": "text"}}, False),  # the default: plain text
        ({"guided_json": {"type": "object"}}, True),
        ({"structured_outputs": {"regex": "[0-9]+"}}, True),
        ({}, False),
    ],
)
def test_what_needs_one_plain_sample(passthrough: dict[str, Any], single: bool) -> None:
    req = GenRequest(messages=({"role": "user", "content": "hi"},), passthrough=passthrough)
    assert req.needs_single is single
