"""Token-id prompts end to end: gateway -> real vLLM worker, compared with the worker's own
answer to the same request (what lm-evaluation-harness's ``local-completions`` sends by
default: ``prompt: [[ids]]``, ``echo``, ``logprobs: 1``, ``max_tokens`` 0 or 1).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.conftest import MODEL

TEXT = "Question: What is the capital of France?\nAnswer: The capital of France is Paris"
# Floats from the shared worker: the same request in another batch may differ in the last
# bits of its reductions; a log-likelihood that differs by less than this ranks alike.
SCORE_TOLERANCE = 1e-3


def token_ids(worker_url: str, text: str) -> list[int]:
    reply = httpx.post(
        worker_url + "/tokenize", json={"model": MODEL, "prompt": text}, timeout=60, trust_env=False
    )
    reply.raise_for_status()
    ids: list[int] = reply.json()["tokens"]
    return ids


def complete(base: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(base + "/v1/completions", json=body, timeout=300, trust_env=False)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


@pytest.mark.parametrize("max_tokens", [0, 1])
@pytest.mark.parametrize("nested", [True, False])
def test_scores_of_a_token_prompt_match_the_workers_own(
    gateway: str, worker_url: str, nested: bool, max_tokens: int
) -> None:
    ids = token_ids(worker_url, TEXT)
    body = {
        "model": MODEL,
        "prompt": [ids] if nested else ids,
        "echo": True,
        "logprobs": 1,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    ours, theirs = complete(gateway, body), complete(worker_url, body)
    mine, own = ours["choices"][0], theirs["choices"][0]
    assert mine["text"] == own["text"] and mine["text"].startswith(TEXT)
    lp, own_lp = mine["logprobs"], own["logprobs"]
    assert lp["tokens"] == own_lp["tokens"] and lp["text_offset"] == own_lp["text_offset"]
    assert lp["token_logprobs"][0] is None and own_lp["token_logprobs"][0] is None
    assert lp["token_logprobs"][1:] == pytest.approx(
        own_lp["token_logprobs"][1:], abs=SCORE_TOLERANCE
    )
    assert len(lp["token_logprobs"]) == len(ids) + (1 if max_tokens else 0)
    assert sum(lp["token_logprobs"][1 : len(ids)]) == pytest.approx(
        sum(own_lp["token_logprobs"][1 : len(ids)]), abs=SCORE_TOLERANCE * len(ids)
    )
    assert ours["usage"]["prompt_tokens"] == len(ids) == theirs["usage"]["prompt_tokens"]
    assert ours["ttc"]["policy"] == "single"
    assert any("token-id prompt" in reason for reason in ours["ttc"]["reasons"])


def test_a_token_prompt_generates_what_the_worker_generates(gateway: str, worker_url: str) -> None:
    ids = token_ids(worker_url, "The capital of Japan is")
    body = {"model": "auto", "prompt": ids, "max_tokens": 8, "temperature": 0}
    ours = complete(gateway, body)
    theirs = complete(worker_url, {**body, "model": MODEL})
    assert ours["choices"][0]["text"] == theirs["choices"][0]["text"] != ""
    usage = {k: ours["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    assert usage == {
        "prompt_tokens": len(ids),
        "completion_tokens": theirs["usage"]["completion_tokens"],
        "total_tokens": len(ids) + theirs["usage"]["completion_tokens"],
    }


def test_a_streamed_token_prompt_is_echoed_once_and_billed_from_the_worker(
    gateway: str, worker_url: str
) -> None:
    ids = token_ids(worker_url, "One, two, three,")
    body = {
        "model": "auto",
        "prompt": [ids],
        "max_tokens": 4,
        "temperature": 0,
        "echo": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    text, usage = "", None
    with httpx.stream(
        "POST", gateway + "/v1/completions", json=body, timeout=300, trust_env=False
    ) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = httpx.Response(200, content=line[6:]).json()
            text += "".join(c["text"] for c in chunk["choices"])
            usage = chunk.get("usage") or usage
    assert text.startswith("One, two, three,") and text.count("One, two, three,") == 1
    assert usage is not None and usage["prompt_tokens"] == len(ids)
    assert 0 < usage["completion_tokens"] <= 4
