"""``convergence`` end to end: OpenAI SDK -> gateway -> real SmolLM2 worker.

At temperature 0 SmolLM2 states "The capital of France is Paris" within its first ~20 tokens of
step-by-step reasoning and then keeps listing steps, so probes every 16 tokens agree early.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

MODEL = "smollm2-135m"
MAX_TOKENS = 128
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France? Think step by step, then answer."}
]
TTC = {"ttc": {"policy": "convergence", "probe_every": 16}}


def check_usage(usage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Totals equal the sum of the itemised details; returns the details by kind."""
    details = usage["ttc_details"]
    for field in ("prompt_tokens", "completion_tokens"):
        assert usage[field] == sum(d[field] for d in details)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    return {d["kind"]: d for d in details}


def check_report(ttc: dict[str, Any], text: str, details: dict[str, dict[str, Any]]) -> None:
    assert ttc["policy"] == "convergence"
    assert ttc["probes"] >= 1
    assert details["probe"]["prompt_tokens"] > 0
    assert ttc["chain_tokens"] == details["sample"]["completion_tokens"] <= MAX_TOKENS
    assert ttc["usage_estimated"] is False  # the worker's running usage was used
    assert ttc["early_stopped"] is True and ttc["stop_reason"] == "converged"
    assert ttc["answer"] == "paris"
    assert ttc["tokens_saved"] == MAX_TOKENS - ttc["chain_tokens"] > 0
    assert text.rsplit("\n\n", 1)[-1].startswith("Final answer: Paris")


def test_convergence_stops_the_chain_once_probes_agree(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=QUESTION, max_tokens=MAX_TOKENS, temperature=0, extra_body=TTC
    )
    reply = raw.parse()
    assert raw.headers["x-ttc-policy"] == "convergence"
    text = reply.choices[0].message.content or ""
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    details = check_usage(reply.usage.model_dump())
    check_report((reply.model_extra or {})["ttc"], text, details)


def test_convergence_streams_the_chain_and_ends_with_ttc(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=TTC,
    )
    chunks = list(stream)
    with_text = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(with_text) > 10  # the chain arrives token by token, not in one piece
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == "stop"
    ttc = (finishing[0].model_extra or {})["ttc"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    details = check_usage(chunks[-1].usage.model_dump())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check_report(ttc, text, details)


@pytest.mark.parametrize(
    ("ttc", "param"),
    [({"probe_every": 1}, "ttc.probe_every"), ({"max_probes": 10_000}, "ttc.max_probes")],
)
def test_bad_convergence_params_are_a_400(
    client: openai.OpenAI, ttc: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            max_tokens=8,
            extra_body={"ttc": {"policy": "convergence", **ttc}},
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == param
