"""A real reasoning worker behind the gateway, through the official SDK (issue 13).

The worker is the thinking variant of the bundled model under vLLM's ``deepseek_r1`` parser. It
never closes its thinking (ENVIRONMENT.md): unseeded it often ends right after the opening, and
otherwise thinks until stopped, so every answer here is one the gateway forced. What is
asserted is what a 135M model can show: the fields, the budget and the accounting, not the
quality of the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.integration.conftest import GatewayFactory

QUESTION: Any = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def thinker(reasoning_worker_url: str, start_gateway: GatewayFactory) -> Iterator[openai.OpenAI]:
    url = start_gateway({
        "tiers": {"thinking": {"model": "thinking", "endpoints": [reasoning_worker_url],
                               "profile": "smollm2_thinking"}},
        "server": {"stream_keepalive_s": 1.0},
        "pool": {"health_interval_s": 1.0, "health_timeout_s": 10.0},  # a loaded 2-core CI box
        "router": {"probe": {"mode": "never"}},
    })  # fmt: skip
    with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300) as sdk:
        yield sdk


def reasoning_of(message: Any) -> str:
    return str((message.model_extra or {}).get("reasoning") or "")


def ttc_of(reply: Any) -> dict[str, Any]:
    report: dict[str, Any] = (reply.model_extra or {})["ttc"]
    return report


@pytest.mark.parametrize("budget", [8, 24])
def test_a_budget_of_n_gives_at_most_n_thinking_tokens_and_an_answer(
    thinker: openai.OpenAI, budget: int
) -> None:
    reply = thinker.chat.completions.create(
        model="thinking", messages=QUESTION, temperature=0, max_tokens=200,
        extra_body={"ttc": {"policy": "single", "thinking_budget": budget}},
    )  # fmt: skip
    message = reply.choices[0].message
    report = ttc_of(reply)
    assert message.content and message.content.startswith("The final answer is")
    assert len(message.content) > len("The final answer is")  # min_tokens: a real answer
    assert "<think>" not in message.content and "</think>" not in message.content
    thought = reasoning_of(message)
    assert not thought or thought not in message.content
    assert report["thinking_tokens"] <= budget and report["budget_forced"] is True
    usage = reply.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == report["thinking_tokens"]
    assert usage.completion_tokens > report["thinking_tokens"]  # the answer's tokens too


def test_the_stream_sends_reasoning_deltas_then_a_forced_answer(thinker: openai.OpenAI) -> None:
    stream = thinker.chat.completions.create(
        model="thinking", messages=QUESTION, temperature=0, stream=True,
        stream_options={"include_usage": True},
        extra_body={"ttc": {"policy": "single", "thinking_budget": 16}},
    )  # fmt: skip
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thinking = "".join(str((d.model_extra or {}).get("reasoning") or "") for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert content.startswith("The final answer is") and "</think>" not in content
    assert not thinking.strip() or thinking.strip() not in content
    final = chunks[-1]
    report = ttc_of(final)
    assert report["thinking_tokens"] <= 16 and report["budget_forced"] is True
    assert final.usage is not None and final.usage.completion_tokens_details is not None
    assert final.usage.completion_tokens_details.reasoning_tokens == report["thinking_tokens"]


def test_max_tokens_the_thinking_would_exhaust_still_yields_an_answer(
    thinker: openai.OpenAI,
) -> None:
    reply = thinker.chat.completions.create(
        model="thinking", messages=QUESTION, temperature=0, max_tokens=12,
        reasoning_effort="high", extra_body={"ttc": {"policy": "single"}},
    )  # fmt: skip
    message = reply.choices[0].message
    assert message.content and message.content.startswith("The final answer is")
    assert ttc_of(reply)["thinking_tokens"] <= 6  # half of max_tokens kept for the answer
    usage = reply.usage
    assert usage is not None and usage.completion_tokens is not None
    assert usage.completion_tokens <= 12


def test_adaptive_bon_samples_each_hold_the_budget(thinker: openai.OpenAI) -> None:
    reply = thinker.chat.completions.create(
        model="thinking", messages=QUESTION, temperature=0.8, max_tokens=64,
        extra_body={"ttc": {"policy": "adaptive_bon", "thinking_budget": 8,
                            "min_samples": 2, "max_samples": 2}},
    )  # fmt: skip
    report = ttc_of(reply)
    assert reply.choices[0].message.content
    assert report["thinking_tokens"] <= 8 * report["samples"]
