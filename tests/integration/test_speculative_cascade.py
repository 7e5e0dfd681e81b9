"""speculative and cascade end to end on the real SmolLM2 worker (tiers small and large).

Both tiers are served names of the one worker, so these check the mechanics (drafts, judge
calls, rewrites, escalation, honest usage), not that a larger model helps. The gateway here
declares the roles (``policies.speculative.draft_tier: small``, ...); the last tests run the
default's one-tier config, where one tier plays every role.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.conftest import MODEL, GatewayFactory, gateway_config

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France? Think step by step."}
]
SHORT_QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]
SPECULATIVE = {"ttc": {"policy": "speculative", "max_steps": 3}}
# 96 tokens: room for three steps of a short chain on a worker decoding ~20 tokens/s.
MAX_TOKENS = 96


ROLES = {
    "speculative": {"draft_tier": "small", "judge_tier": "large"},
    "cascade": {"small_tier": "small", "large_tier": "large"},
}


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def client(worker_url: str, start_gateway: GatewayFactory) -> Iterator[openai.OpenAI]:
    with sdk(start_gateway(gateway_config(worker_url, policies=ROLES))) as client:
        yield client


@pytest.fixture(scope="module")
def one_tier(worker_url: str, start_gateway: GatewayFactory) -> Iterator[openai.OpenAI]:
    """config/default.yaml's shape: one tier, no roles declared."""
    config = gateway_config(worker_url)
    config["tiers"] = {MODEL: config["tiers"][MODEL]}
    with sdk(start_gateway(config)) as client:
        yield client


def details(usage: Any) -> dict[tuple[str, str], dict[str, int]]:
    rows = usage.model_dump()["ttc_details"]
    return {(row["kind"], row["tier"]): row for row in rows}


def check_speculative_report(ttc: dict[str, Any], usage: Any) -> None:
    assert ttc["policy"] == "speculative"
    assert 1 <= ttc["steps"] <= 3
    assert ttc["steps_accepted"] + ttc["steps_rejected"] == ttc["steps_drafted"]
    assert ttc["steps"] <= ttc["steps_drafted"]
    rows = details(usage)
    assert ("draft", "small") in rows and ("judge", "large") in rows
    # Every judge call generates exactly one token, and each judged draft has a score.
    assert rows[("judge", "large")]["completion_tokens"] == len(ttc["judge_scores"])
    assert all(s is None or 0.0 <= s <= 9.0 for s in ttc["judge_scores"])
    rewritten = rows.get(("sample", "large"), {"completion_tokens": 0})["completion_tokens"]
    assert (rewritten > 0) == (ttc["steps_rejected"] > 0)
    assert sum(r["completion_tokens"] for r in rows.values()) == usage.completion_tokens


def test_speculative_drafts_judges_and_counts_every_token(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="auto",
        messages=QUESTION,
        max_tokens=MAX_TOKENS,
        temperature=0,
        extra_body=SPECULATIVE,
    )
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in {"stop", "length"}
    ttc = (reply.model_extra or {})["ttc"]
    check_speculative_report(ttc, reply.usage)
    assert ttc["stop_reason"] in {
        "answer",
        "eos",
        "repeated_step",
        "max_steps",
        "max_tokens",
        "empty_step",
    }


def test_speculative_streams_each_settled_step(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="auto",
        messages=QUESTION,
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=SPECULATIVE,
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices]
    settled = [p for p in pieces if p]
    assert "".join(settled).strip()
    ttc = next((c.model_extra or {})["ttc"] for c in chunks if (c.model_extra or {}).get("ttc"))
    assert len(settled) == ttc["steps"]  # one chunk per settled step
    usage = chunks[-1].usage
    assert usage is not None
    check_speculative_report(ttc, usage)


def test_cascade_reports_escalation_and_bills_the_small_tier(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="auto",
        messages=SHORT_QUESTION,
        max_tokens=16,
        extra_body={"ttc": {"policy": "cascade"}},
    )
    assert reply.choices[0].message.content
    ttc = (reply.model_extra or {})["ttc"]
    assert ttc["policy"] == "cascade"
    assert isinstance(ttc["escalated"], bool)
    assert 1 <= ttc["small"]["samples"] <= 4  # small_max_samples default
    rows = details(reply.usage)
    assert ("sample", "small") in rows
    assert (("sample", "large") in rows) == ttc["escalated"]
    assert ttc["final_tier"] == ("large" if ttc["escalated"] else "small")


@pytest.mark.parametrize("policy", ["speculative", "cascade"])
def test_one_tier_runs_both_roles_on_it_and_says_so(one_tier: openai.OpenAI, policy: str) -> None:
    ttc = {"policy": policy, "max_steps": 2} if policy == "speculative" else {"policy": policy}
    reply = one_tier.chat.completions.create(
        model="auto", messages=SHORT_QUESTION, max_tokens=32, extra_body={"ttc": ttc}
    )
    assert reply.choices[0].message.content
    report = (reply.model_extra or {})["ttc"]
    assert report["policy"] == policy
    assert any(f"{policy}: one tier ({MODEL})" in reason for reason in report["reasons"])
    assert {tier for _, tier in details(reply.usage)} == {MODEL}
