"""adaptive_bon through the gateway on the real SmolLM2 worker, with the official OpenAI SDK."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from policies.answers import extract_answer
from tests.integration.conftest import MODEL

# SmolLM2-135M answers this one consistently ("The capital of Japan is Tokyo."), so the votes
# usually agree and the policy can stop early; 24 tokens hold that sentence with room to spare.
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of Japan?"}
]
MAX_TOKENS = 24
# Gate off: these tests look at the votes, which a confident first sample would skip.
ADAPTIVE = {"policy": "adaptive_bon", "max_samples": 6, "single_sample_confidence": None}


def ttc_of(obj: Any) -> dict[str, Any]:
    ttc: dict[str, Any] = (obj.model_extra or {})["ttc"]
    return ttc


def spent_by_kind(usage: Any) -> int:
    details: list[dict[str, Any]] = (usage.model_extra or {})["ttc_details"]
    assert {d["kind"] for d in details} == {"sample"}
    return sum(d["completion_tokens"] for d in details)


def test_adaptive_bon_votes_and_counts_every_sample(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=MAX_TOKENS,
        logprobs=True,
        extra_body={"ttc": ADAPTIVE},
    )
    report = ttc_of(response)
    assert (report["policy"], report["tier"]) == ("adaptive_bon", MODEL)
    assert 2 <= report["samples"] <= 6
    assert sum(report["votes"].values()) <= report["samples"]
    text = response.choices[0].message.content or ""
    assert text
    if report["answer"] is not None:  # the returned text is one of the leader's samples
        assert extract_answer(text) == report["answer"]
    usage = response.usage
    assert usage is not None
    assert usage.completion_tokens == spent_by_kind(usage)
    logprobs = response.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    visible = len(logprobs.content)  # completion tokens of the returned sample alone
    assert visible <= MAX_TOKENS
    assert usage.completion_tokens > visible


def test_fixed_best_of_n_draws_exactly_n(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=MAX_TOKENS,
        extra_body={"ttc": {"policy": "adaptive_bon", "min_samples": 3, "max_samples": 3}},
    )
    report = ttc_of(response)
    assert (report["samples"], report["rounds"]) == (3, 1)
    assert (report["early_stopped"], report["stop_reason"]) == (False, "max_samples")
    assert response.usage is not None
    assert response.usage.completion_tokens == spent_by_kind(response.usage)


def test_adaptive_bon_stream_ends_with_ttc_and_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ttc": ADAPTIVE},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    last = chunks[-1]
    assert last.choices == []
    report = ttc_of(last)
    assert report["policy"] == "adaptive_bon"
    assert 2 <= report["samples"] <= 6
    assert last.usage is not None
    assert last.usage.completion_tokens == spent_by_kind(last.usage)
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and ttc_of(finishing[0]) == report


@pytest.mark.parametrize(
    ("override", "param"),
    [({"max_samples": 17}, "ttc.max_samples"), ({"confidence": 1.5}, "ttc.confidence")],
)
def test_bad_override_is_a_400_naming_the_field(
    client: openai.OpenAI, override: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            max_tokens=MAX_TOKENS,
            extra_body={"ttc": {"policy": "adaptive_bon", **override}},
        )
    assert caught.value.param == param


def test_default_gate_answers_confident_questions_with_one_sample(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=MAX_TOKENS,
        extra_body={"ttc": {"policy": "adaptive_bon"}},
    )
    report = ttc_of(response)
    gate = report["first_sample_confidence"]
    assert gate is not None
    if gate >= 0.6:  # the default gate: one greedy sample, no vote
        assert (report["samples"], report["stop_reason"]) == (1, "confident_first_sample")
    else:
        assert report["samples"] >= 2
    assert response.usage is not None
    assert response.usage.completion_tokens == spent_by_kind(response.usage)
