"""The Responses API end to end: official OpenAI SDK -> gateway -> real vLLM worker (SmolLM2)."""

from __future__ import annotations

from typing import Any, cast

import openai
import pytest


def test_create_answers_with_output_text_usage_and_ttc(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="auto",
        input="What is the capital of Japan?",
        max_output_tokens=24,
        temperature=0,
        instructions="Answer briefly.",
    )
    assert response.status in {"completed", "incomplete"}
    assert response.output_text
    assert response.output[0].type == "message"
    usage = response.usage
    assert usage is not None and 0 < usage.output_tokens <= 24 and usage.input_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    ttc = (response.model_extra or {})["ttc"]
    assert ttc["tier"] == "smollm2-135m" and ttc["policy"] == "single"


def test_the_stream_helper_delivers_text_and_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="auto", input="Name a colour.", max_output_tokens=16, temperature=0
    ) as stream:
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    last = events[-1]
    # 16 tokens may cut the answer: OpenAI then ends with response.incomplete, not .completed
    assert last.type in {"response.completed", "response.incomplete"}
    final = last.response
    assert deltas and "".join(deltas) == final.output_text
    assert final.usage is not None and final.usage.output_tokens >= len(deltas)
    sequence = [e.sequence_number for e in events]
    assert sequence == list(range(len(events)))


def test_previous_response_id_continues_and_delete_forgets(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="auto", input="My name is Ada.", max_output_tokens=16, temperature=0
    )
    second = client.responses.create(
        model="auto",
        input="What is my name?",
        previous_response_id=first.id,
        max_output_tokens=16,
        temperature=0,
    )
    # the second prompt holds the first turn: more input tokens than the question alone
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
    assert client.responses.retrieve(first.id).output_text == first.output_text
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_adaptive_bon_serves_responses_too(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="auto",
        input="What is the capital of France?",
        max_output_tokens=16,
        extra_body={"ttc": {"policy": "adaptive_bon", "max_samples": 4}},
    )
    ttc = (response.model_extra or {})["ttc"]
    assert ttc["policy"] == "adaptive_bon" and ttc["samples"] >= 1
    assert response.usage is not None
    assert response.usage.output_tokens >= ttc["samples"]  # every sample is counted


def test_three_turns_through_previous_response_id(client: openai.OpenAI) -> None:
    turns = ["My favourite city is Paris.", "It is in France.", "Which city do I like?"]
    previous: str | None = None
    inputs: list[int] = []
    for text in turns:
        response = client.responses.create(
            model="auto",
            input=text,
            max_output_tokens=12,
            temperature=0,
            previous_response_id=previous,
        )
        assert response.usage is not None and response.output_text
        inputs.append(response.usage.input_tokens)
        previous = response.id
    assert inputs[0] < inputs[1] < inputs[2]  # each turn carries the ones before it


def test_reasoning_effort_moves_the_routing_decision(client: openai.OpenAI) -> None:
    def reasons(effort: str) -> list[str]:
        response = client.responses.create(
            model="auto",
            input="What is 17 * 23?",
            max_output_tokens=8,
            reasoning=cast(Any, {"effort": effort}),
            extra_body={"ttc": {"policy": "single"}},
        )
        found: list[str] = (response.model_extra or {})["ttc"]["reasons"]
        return found

    assert any("reasoning_effort high: bands shifted +0.15" in r for r in reasons("high"))
    assert any("reasoning_effort low: bands shifted -0.15" in r for r in reasons("low"))


def test_get_final_response_after_a_completed_stream(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="auto", input="Say hello.", max_output_tokens=64, temperature=0
    ) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == text and text
