"""A real reasoning worker behind the gateway, through the official SDK (issue 13).

The worker is the thinking variant of the bundled model under vLLM's ``deepseek_r1`` parser. It
never closes its thinking (ENVIRONMENT.md): unseeded it often ends right after the opening, and
otherwise thinks until stopped, so every answer here is one the gateway forced. What is
asserted is what a 135M model can show: the fields, the budget and the accounting, not the
quality of the answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.test_cancellation import wait_until_idle

QUESTION: Any = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def thinker(reasoning_worker_url: str, start_gateway: GatewayFactory) -> Iterator[openai.OpenAI]:
    url = start_gateway(
        {
            "tiers": {
                "thinking": {
                    "model": "thinking",
                    "endpoints": [reasoning_worker_url],
                    "profile": "smollm2_thinking",
                }
            },
            "server": {"stream_keepalive_s": 1.0},
            "pool": {"health_interval_s": 1.0, "health_timeout_s": 10.0},  # a loaded 2-core CI box
            "router": {"probe": {"mode": "never"}},
        }
    )
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
        model="thinking",
        messages=QUESTION,
        temperature=0,
        max_tokens=200,
        extra_body={"ttc": {"policy": "single", "thinking_budget": budget}},
    )
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
        model="thinking",
        messages=QUESTION,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ttc": {"policy": "single", "thinking_budget": 16}},
    )
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
        model="thinking",
        messages=QUESTION,
        temperature=0,
        max_tokens=12,
        reasoning_effort="high",
        extra_body={"ttc": {"policy": "single"}},
    )
    message = reply.choices[0].message
    assert message.content and message.content.startswith("The final answer is")
    assert ttc_of(reply)["thinking_tokens"] <= 6  # half of max_tokens kept for the answer
    usage = reply.usage
    assert usage is not None and usage.completion_tokens is not None
    assert usage.completion_tokens <= 12


def test_adaptive_bon_samples_each_hold_the_budget(thinker: openai.OpenAI) -> None:
    reply = thinker.chat.completions.create(
        model="thinking",
        messages=QUESTION,
        temperature=0.8,
        max_tokens=64,
        extra_body={
            "ttc": {
                "policy": "adaptive_bon",
                "thinking_budget": 8,
                "min_samples": 2,
                "max_samples": 2,
            }
        },
    )
    report = ttc_of(reply)
    assert reply.choices[0].message.content
    assert report["thinking_tokens"] <= 8 * report["samples"]


# A trace of at least MIN_THINKING tokens: the seeded variant would otherwise often end its
# thinking by itself within a few dozen tokens (vLLM's min_tokens holds back its end of text).
MIN_THINKING = 160
STEP_BY_STEP: Any = [{"role": "user", "content": "What is 2 + 3? Think step by step."}]
LONG_TRACE = {"min_tokens": MIN_THINKING}


def generated(worker_url: str) -> float:
    """The worker's own count of tokens it generated (``vllm:generation_tokens_total``)."""
    text = httpx.get(worker_url + "/metrics", trust_env=False).text
    return sum(float(v) for v in re.findall(r"vllm:generation_tokens_total\{[^}]*\} (\S+)", text))


def test_convergence_stops_a_thinking_trace_once_probes_agree(
    thinker: openai.OpenAI, reasoning_worker_url: str
) -> None:
    """The same seeded trace thinks MIN_THINKING+ tokens under ``single``; ``convergence`` probes
    it while it thinks and stops it once two probes agree. The worker's own generation counter
    shows the trace was cut upstream: it could not have ended before MIN_THINKING tokens."""
    ask: Any = {"model": "thinking", "messages": STEP_BY_STEP, "temperature": 0.7, "seed": 1}
    full = thinker.chat.completions.create(
        **ask, extra_body={**LONG_TRACE, "ttc": {"policy": "single", "thinking_budget": 200}}
    )
    full_thinking = ttc_of(full)["thinking_tokens"]
    assert full_thinking >= MIN_THINKING
    before = generated(reasoning_worker_url)
    reply = thinker.chat.completions.create(
        **ask,
        extra_body={
            **LONG_TRACE,
            "ttc": {"policy": "convergence", "thinking_budget": 200, "probe_every": 16},
        },
    )
    report = ttc_of(reply)
    assert report["early_stopped"] is True and report["stop_reason"] == "converged"
    assert report["thinking_tokens"] < MIN_THINKING <= full_thinking
    assert report["reasoning_tokens_saved"] == 200 - report["thinking_tokens"]
    message = reply.choices[0].message
    assert message.content == "The final answer is " + str(report["answer"])
    assert reasoning_of(message) and "</think>" not in reasoning_of(message)
    usage = reply.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == report["thinking_tokens"]
    # Cut upstream: the worker generated what the gateway billed (the trace and the probes),
    # give or take the tokens already in flight when the stop arrived; never MIN_THINKING.
    assert wait_until_idle(reasoning_worker_url)
    spent = generated(reasoning_worker_url) - before
    assert usage.completion_tokens <= spent < MIN_THINKING


def test_streamed_adaptive_bon_sends_the_live_samples_thinking_before_its_round_ends(
    thinker: openai.OpenAI,
) -> None:
    stream = thinker.chat.completions.create(
        model="thinking",
        messages=QUESTION,
        temperature=0.8,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={
            "min_tokens": 4,  # the live sample thinks (it may end at once otherwise)
            "ttc": {
                "policy": "adaptive_bon",
                "thinking_budget": 8,
                "min_samples": 2,
                "max_samples": 2,
                "single_sample_confidence": None,
            },
        },
    )
    kinds: list[str] = []
    thinking = content = ""
    chunks = list(stream)
    for chunk in chunks:
        if ((chunk.model_extra or {}).get("ttc") or {}).get("progress"):
            kinds.append("progress")
        for choice in chunk.choices:
            piece = str((choice.delta.model_extra or {}).get("reasoning") or "")
            if piece:
                kinds.append("thinking")
                thinking += piece
            if choice.delta.content:
                kinds.append("content")
                content += choice.delta.content
    assert "thinking" in kinds and kinds.index("thinking") < kinds.index("progress")
    assert kinds.index("progress") < kinds.index("content")
    assert content.startswith("The final answer is")
    report = ttc_of(chunks[-1])
    assert report["samples"] == 2 and report["thinking_tokens"] <= 8 * 2
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == report["thinking_tokens"]


@pytest.mark.parametrize("policy", ["speculative", "cascade"])
@pytest.mark.parametrize("stream", [False, True])
def test_two_tier_policies_hold_the_thinking_budget_and_answer(
    thinker: openai.OpenAI, policy: str, stream: bool
) -> None:
    """One reasoning tier plays both roles here (drafts and judge, small and large stage)."""
    ask: Any = {
        "model": "thinking",
        "messages": QUESTION,
        "temperature": 0.8,
        "max_tokens": 96,
        "extra_body": {"ttc": {"policy": policy, "thinking_budget": 8}},
    }
    if stream:
        chunks = list(
            thinker.chat.completions.create(
                **ask, stream=True, stream_options={"include_usage": True}
            )
        )
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        report, usage = ttc_of(chunks[-1]), chunks[-1].usage
    else:
        reply = thinker.chat.completions.create(**ask)
        content = reply.choices[0].message.content or ""
        report, usage = ttc_of(reply), reply.usage
    assert content.strip() and "</think>" not in content
    if policy == "speculative":  # the kept trace holds the budget; each draft and rewrite too
        assert report["trace_thinking_tokens"] <= 8
        calls = report["steps_drafted"] + report["steps_rejected"]
        assert report["thinking_tokens"] <= 8 * max(calls, 1)
    else:  # each sample of each stage holds it
        assert report["thinking_tokens"] <= 8 * max(int(report.get("samples") or 1), 1)
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == report["thinking_tokens"]
