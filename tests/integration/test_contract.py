"""The compute contract on the real SmolLM2 worker, through the gateway with the OpenAI SDK.

Non-streamed sub-calls are clamped and reserved, so the worker's own usage never passes
``max_total_tokens``; a deadline is met within the stated grace (``DEADLINE_GRACE_S``) plus the
time of one HTTP round trip.
"""

from __future__ import annotations

import time
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam

from server.lifecycle import DEADLINE_GRACE_S
from tests.integration.conftest import MODEL

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Name a colour of the rainbow and explain why you chose it."}
]
# High temperature and no gate: the samples disagree, so only the contract stops the rounds.
VOTES = {
    "policy": "adaptive_bon",
    "max_samples": 16,
    "single_sample_confidence": None,
    "min_samples": 2,
    "step": 2,
}


def ttc_of(obj: Any) -> dict[str, Any]:
    ttc: dict[str, Any] = (obj.model_extra or {})["ttc"]
    return ttc


def test_adaptive_bon_stays_inside_max_total_tokens(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=1.5,
        extra_body={"ttc": {**VOTES, "max_total_tokens": 400}},
    )
    contract = ttc_of(reply)["contract"]
    assert reply.usage is not None
    assert reply.usage.total_tokens <= 400  # the worker's own counts: no overshoot at all
    assert contract["used_tokens"] == reply.usage.total_tokens
    assert reply.choices[0].message.content


def test_a_streamed_single_answer_is_clamped_to_the_contract(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ttc": {"policy": "single", "max_total_tokens": 90}},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and usage.total_tokens <= 90


def test_a_contract_smaller_than_the_prompt_is_a_400(client: openai.OpenAI) -> None:
    try:
        client.chat.completions.create(
            model=MODEL, messages=QUESTION, extra_body={"ttc": {"max_total_tokens": 10}}
        )
    except openai.BadRequestError as exc:
        assert exc.code == "contract_too_small"
    else:
        raise AssertionError("a 10-token contract answered")


def test_deadline_ms_is_met_with_the_best_answer_so_far(client: openai.OpenAI) -> None:
    """Met within the grace either way: the samples drawn by then vote, or, when the worker is
    so loaded that no round finished, a 504 naming ttc.deadline_ms (never a late answer)."""
    started = time.monotonic()
    try:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            temperature=1.5,
            max_tokens=16,
            extra_body={"ttc": {**VOTES, "deadline_ms": 8000}},
        )
    except openai.APIStatusError as exc:
        assert exc.status_code == 504 and "ttc.deadline_ms" in exc.message
        reply = None
    elapsed = time.monotonic() - started
    assert elapsed < 8.0 + DEADLINE_GRACE_S + 0.5  # 0.5 s: the SDK's round trip on a busy box
    if reply is not None:
        report = ttc_of(reply)
        assert report["contract"]["deadline_ms"] == 8000
        if report["contract"]["stop_reason"] == "deadline":
            assert report["early_stopped"] and report["samples"] >= 1
        assert reply.choices[0].message.content
