"""Self-consistency over tool calls: the vote keys (pure) and adaptive_bon voting on calls.

The backend is a unit-test fake (``CallingBackend``): a real worker cannot be made to split its
samples between chosen arguments, or to emit malformed ones, on demand.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from core.backend import Choice, Completion, Delta
from core.request import Decision, GenRequest
from core.usage import TokenUsage
from policies.adaptive_bon import AdaptiveBonParams, AdaptiveBonPolicy
from policies.base import stream_whole
from policies.tool_votes import NO_CALL, canonical, tool_schemas, vote_key
from policies.voting import NO_ANSWER

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
SCHEMAS = tool_schemas([WEATHER])


def call(arguments: str, name: str = "get_weather") -> dict[str, Any]:
    return {"id": "call_x", "type": "function", "function": {"name": name, "arguments": arguments}}


def test_the_key_is_the_name_and_canonical_arguments() -> None:
    a = vote_key([call('{"city": "Paris", "days": 2}')], SCHEMAS)
    b = vote_key([call('{ "days":2,"city":"Paris" }')], SCHEMAS)
    assert a == b == 'get_weather({"city":"Paris","days":2})'
    assert vote_key([], SCHEMAS) == NO_CALL
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_invalid_calls_vote_for_nothing() -> None:
    assert vote_key([call('{"city": "Paris"')], SCHEMAS) is None  # not JSON
    assert vote_key([call('["Paris"]')], SCHEMAS) is None  # not an object
    assert vote_key([call('{"city": 7}')], SCHEMAS) is None  # wrong type
    assert vote_key([call("{}")], SCHEMAS) is None  # required field missing
    assert vote_key([call('{"city": "Paris", "x": 1}')], SCHEMAS) is None  # not allowed
    assert vote_key([call('{"city": "Paris"}', name="get_time")], SCHEMAS) is None  # not offered
    two = [call('{"city": "Paris"}'), call('{"city": 1}')]
    assert vote_key(two, SCHEMAS) is None  # one bad call spoils the sample


@dataclass
class CallingBackend:
    """Each choice is a tool call with the next scripted arguments (or text, for None)."""

    arguments: Iterator[str | None]
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.calls.append(body)
        choices = tuple(self._choice(i, next(self.arguments)) for i in range(body["n"]))
        return Completion(choices, TokenUsage(30, 12 * len(choices)), "fake")

    def _choice(self, index: int, arguments: str | None) -> Choice:
        if arguments is None:
            message: dict[str, Any] = {"role": "assistant", "content": "It is sunny."}
            return Choice(index, "It is sunny.", "stop", (-0.2,), raw={"message": message})
        message = {"role": "assistant", "content": None, "tool_calls": [call(arguments)]}
        return Choice(index, "", "tool_calls", (-0.2,), raw={"message": message})

    def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Iterator[Delta]:
        raise AssertionError("adaptive_bon does not stream upstream")


def tools_request() -> GenRequest:
    return GenRequest(
        messages=({"role": "user", "content": "Weather in Paris?"},),
        passthrough={"tools": [WEATHER], "tool_choice": "auto"},
        request_id="r1",
    )


def policy(**params: Any) -> AdaptiveBonPolicy:
    base = {"min_samples": 3, "step": 2, "max_samples": 5, "single_sample_confidence": None}
    return AdaptiveBonPolicy(AdaptiveBonParams(**(base | params)))


DECISION = Decision("small", AdaptiveBonParams())
PARIS, LYON = '{"city": "Paris"}', '{"city": "Lyon"}'


async def test_samples_disagreeing_on_arguments_return_the_majority_call() -> None:
    backend = CallingBackend(iter([PARIS, LYON, '{"city":"Paris"}', PARIS, LYON]))
    result = await policy().run(tools_request(), DECISION, backend)  # type: ignore[arg-type]
    (winner,) = result.choices
    assert winner.finish_reason == "tool_calls"
    assert json.loads(winner.tool_calls[0]["function"]["arguments"]) == {"city": "Paris"}
    votes = result.report["votes"]
    assert votes == {'get_weather({"city":"Paris"})': 3, 'get_weather({"city":"Lyon"})': 2}
    assert result.report["samples"] == 5 and result.report["stop_reason"] == "max_samples"
    assert result.usage.total.completion_tokens == 60  # every sample's tokens
    assert result.usage.total.prompt_tokens == 60  # two rounds of 30
    assert backend.calls[0]["tools"] == [WEATHER] and backend.calls[0]["n"] == 3


async def test_a_malformed_majority_loses_to_the_valid_call() -> None:
    bad = ['{"city": "Paris"', '{"city": 3}', '{"town": "Paris"}', "not json"]
    backend = CallingBackend(iter([bad[0], LYON, bad[1], bad[2], bad[3]]))
    result = await policy().run(tools_request(), DECISION, backend)  # type: ignore[arg-type]
    assert result.choices[0].tool_calls[0]["function"]["arguments"] == LYON
    # the four invalid calls vote for nothing, and the tally says so
    assert result.report["votes"] == {'get_weather({"city":"Lyon"})': 1, NO_ANSWER: 4}
    assert result.report["answer"] == 'get_weather({"city":"Lyon"})'
    assert result.usage.total.completion_tokens == 60


async def test_no_call_is_a_candidate_and_stops_by_the_same_rules() -> None:
    backend = CallingBackend(itertools.repeat(None))
    result = await policy(min_samples=2, max_samples=8).run(
        tools_request(),
        DECISION,
        backend,  # type: ignore[arg-type]
    )
    assert result.report["votes"] == {NO_CALL: result.report["samples"]}
    assert result.report["early_stopped"] and result.choices[0].text == "It is sunny."
    assert result.choices[0].tool_calls == ()


async def test_a_streamed_vote_sends_the_winning_call_as_a_delta() -> None:
    backend = CallingBackend(itertools.repeat(PARIS))
    events = [e async for e in stream_whole(policy(), tools_request(), DECISION, backend)]  # type: ignore[arg-type]
    deltas = [e for e in events if isinstance(e, Delta)]
    sent = [d.raw["delta"]["tool_calls"] for d in deltas if d.raw]
    assert sent == [[{"index": 0, **call(PARIS)}]]
    assert deltas[-1].finish_reason == "tool_calls"


async def test_through_the_gateway_the_sdk_gets_the_majority_call_and_the_split() -> None:
    from server.app import create_app
    from tests.unit.test_lifecycle import client_for, settings

    backend = CallingBackend(iter([PARIS, LYON, PARIS, "{bad", PARIS]))
    client = client_for(create_app(settings(), backend=backend))  # type: ignore[arg-type]
    tools: Any = [WEATHER]
    reply = await client.chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
        extra_body={
            "ttc": {
                "policy": "adaptive_bon",
                "min_samples": 3,
                "max_samples": 5,
                "single_sample_confidence": None,
            }
        },
    )
    call: Any
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.function.arguments == PARIS and reply.choices[0].finish_reason == "tool_calls"
    ttc: Any = reply.model_extra["ttc"]  # type: ignore[index]
    assert ttc["votes"] == {
        'get_weather({"city":"Paris"})': 3,
        'get_weather({"city":"Lyon"})': 1,
        NO_ANSWER: 1,  # the malformed call
    }
    assert ttc["samples"] == 5
    assert reply.usage is not None and reply.usage.completion_tokens == 60
