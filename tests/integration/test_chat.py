"""The request path end to end: official OpenAI SDK -> gateway -> real vLLM worker (SmolLM2)."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of Japan?"}
]


def detail_sum(usage: dict[str, object], field: str) -> int:
    details = usage["ttc_details"]
    assert isinstance(details, list)
    return sum(int(d[field]) for d in details)


def test_chat_returns_a_real_completion_with_ttc_and_honest_usage(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=QUESTION, max_tokens=24, temperature=0
    )
    reply = raw.parse()
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in {"stop", "length"}
    assert raw.headers["x-ttc-tier"] == "smollm2-135m"
    assert raw.headers["x-ttc-policy"] == "single"
    extra = reply.model_extra or {}
    assert extra["ttc"]["policy"] == "single"
    assert extra["ttc"]["tier"] == "smollm2-135m"
    usage = reply.usage
    assert usage is not None and 0 < usage.completion_tokens <= 24
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    dumped = usage.model_dump()
    assert detail_sum(dumped, "completion_tokens") == usage.completion_tokens


def test_stream_with_usage_ends_with_ttc_and_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2-135m",
        messages=QUESTION,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in {"stop", "length"}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert 0 < last.usage.completion_tokens <= 16
    assert any((c.model_extra or {}).get("ttc") for c in chunks)


def test_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="auto", messages=QUESTION, max_tokens=8, temperature=0, stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)  # no empty-choices chunk to trip naive clients
    assert (chunks[-1].model_extra or {})["ttc"]["policy"] == "single"


def test_n_choices_are_all_counted(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="auto", messages=QUESTION, max_tokens=12, n=3, temperature=0.9
    )
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert reply.usage is not None
    assert reply.usage.completion_tokens >= 3  # all three samples are billed


def test_stop_sequence_and_max_completion_tokens(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="auto", messages=QUESTION, max_completion_tokens=40, temperature=0, stop=["."]
    )
    assert "." not in (reply.choices[0].message.content or "")
    short = client.chat.completions.create(
        model="auto", messages=QUESTION, max_completion_tokens=3, temperature=0
    )
    assert short.usage is not None and short.usage.completion_tokens <= 3
    assert short.choices[0].finish_reason == "length"


def test_seed_makes_sampling_repeatable_and_logprobs_pass_through(client: openai.OpenAI) -> None:
    def ask() -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model="auto",
            messages=QUESTION,
            max_tokens=12,
            temperature=1.0,
            seed=1234,
            logprobs=True,
            top_logprobs=2,
        )

    first, second = ask(), ask()
    assert first.choices[0].message.content == second.choices[0].message.content
    logprobs = first.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert len(logprobs.content[0].top_logprobs) == 2


def test_models_lists_auto_and_tiers(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"auto", "smollm2-135m", "small", "large"} <= ids


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_health_and_ready(gateway: str, path: str) -> None:
    assert httpx.get(gateway + path, trust_env=False).status_code == 200


def test_metrics_count_requests_and_tokens(client: openai.OpenAI, gateway: str) -> None:
    client.chat.completions.create(model="auto", messages=QUESTION, max_tokens=4, temperature=0)
    text = httpx.get(gateway + "/metrics", trust_env=False).text
    assert 'ttc_requests_total{policy="single",status="ok",tier="smollm2-135m"}' in text
    assert 'ttc_tokens_total{direction="completion",kind="sample",tier="smollm2-135m"}' in text
    assert "ttc_worker_healthy{" in text and "vllm:" not in text
