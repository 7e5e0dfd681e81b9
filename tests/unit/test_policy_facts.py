"""A policy's facts on its registration drive the router, load scaling, the reservation bound
and tool routing: a test policy (``tests.unit.facts_policy``) registered with one line and
facts unlike any default changes what each of them does, and no code outside its module and
the registry names it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.errors import InvalidRequest
from core.request import Decision, GenRequest
from policies import registry
from policies.config import PoliciesConfig
from policies.worst_case import worst_case_tokens
from router.config import BandConfig, LoadConfig, RouterConfig
from router.router import Router
from tests.unit import facts_policy
from tests.unit.test_router import FixedLoad, constant

QUESTION = ({"role": "user", "content": "Write a haiku about rain."},)  # an open answer
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.fixture(autouse=True)
def odd_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "MODULES", (*registry.MODULES, "tests.unit.facts_policy"))
    registry.registrations.cache_clear()
    yield
    registry.registrations.cache_clear()


def odd_router(difficulty: float = 0.9, **config: Any) -> Router:
    bands = (
        BandConfig(name="easy", upto=0.4, policy="odd"),
        BandConfig(name="hard", policy="odd"),
    )
    settings = RouterConfig(predictor=constant(difficulty), bands=bands, **config)
    return Router(settings, PoliciesConfig(), ("small", "large"))


def ask(**fields: Any) -> GenRequest:
    return GenRequest(messages=QUESTION, **fields)


def test_the_router_routes_a_text_completion_to_a_policy_that_takes_text_prompts() -> None:
    text = GenRequest(messages=QUESTION, prompt="Rain on the roof", ttc={"policy": "odd"})
    assert odd_router().decide(text).params.name == "odd"


def test_the_router_switches_greedy_requests_off_a_voting_policy() -> None:
    decision = odd_router().decide(ask(sampling={"temperature": 0.0}))
    assert decision.params.name == "single"
    assert any("temperature 0" in r for r in decision.reasons)


def test_the_router_refuses_n_and_logprobs_where_the_facts_say_so() -> None:
    with pytest.raises(InvalidRequest) as many:
        odd_router().decide(ask(sampling={"n": 2}, ttc={"policy": "odd"}))
    assert many.value.param == "n" and "'odd' returns one answer" in many.value.message
    with pytest.raises(InvalidRequest) as logprobs:
        odd_router().decide(ask(sampling={"logprobs": True}, ttc={"policy": "odd"}))
    assert logprobs.value.param == "logprobs"
    routed = odd_router().decide(ask(sampling={"logprobs": True}))
    assert routed.params.name == "single"


def test_load_scaling_sheds_it_for_easy_requests_on_a_saturated_tier() -> None:
    load = LoadConfig(saturated_at=0.8)
    settings = RouterConfig(
        predictor=constant(0.1),
        bands=(BandConfig(name="easy", upto=0.4, policy="odd"), BandConfig(name="hard")),
        load=load,
    )
    busy = Router(settings, PoliciesConfig(), ("small", "large"), load=FixedLoad(small=0.9))
    idle = Router(settings, PoliciesConfig(), ("small", "large"), load=FixedLoad(small=0.1))
    shed = busy.decide(ask())
    assert shed.params.name == "single"
    assert any("odd off" in r for r in shed.reasons)
    assert idle.decide(ask()).params.name == "odd"


def test_the_reservation_bound_is_the_one_on_its_registration() -> None:
    decision = Decision(tier="small", params=facts_policy.OddParams())
    assert worst_case_tokens(ask(sampling={"max_tokens": 8}), decision, 2048) == 4_321


def test_tool_routing_lets_a_tool_voting_policy_vote_on_calls() -> None:
    tools = {"tools": TOOLS, "tool_choice": "auto"}
    pinned = odd_router().decide(ask(passthrough=tools, ttc={"policy": "odd"}))
    assert pinned.params.name == "odd"
    assert "tools: odd samples vote on the calls" in pinned.reasons
    routed = odd_router().decide(ask(passthrough=tools))
    assert routed.params.name == "single"


def test_the_router_gives_it_only_the_answer_shapes_it_serves() -> None:
    assert odd_router().decide(ask()).params.name == "odd"
    closed = ({"role": "user", "content": "What is the capital of Japan?"},)
    decision = odd_router().decide(GenRequest(messages=closed))
    assert decision.params.name == "single" and decision.shape == "closed"
    assert any(r.startswith("answer shape closed") for r in decision.reasons)
