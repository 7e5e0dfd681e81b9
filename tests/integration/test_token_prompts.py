"""Token-id prompts end to end: gateway -> real vLLM worker, compared with the worker's own
answer to the same request (what lm-evaluation-harness's ``local-completions`` sends by
default: ``prompt: [[ids]]``, ``echo``, ``logprobs: 1``, ``max_tokens`` 0 or 1).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.conftest import MODEL, worker_key

TEXT = "Question: What is the capital of France?\nAnswer: The capital of France is Paris"
# A worker's logprobs depend on which other requests share its batch (the shared dev worker
# serves other clients: the same request comes back in two or three variants, 0.07 apart);
# the gateway relays one of them unchanged, so it must equal one of the worker's own answers
# to the same request, exactly. An idle worker (CI's) matches at the first attempt.
ATTEMPTS = 8


def keyed() -> dict[str, str]:
    """The session worker requires its key (the gateway sends it from the tier's config)."""
    return {"authorization": f"Bearer {worker_key()}"}


def token_ids(worker_url: str, text: str) -> list[int]:
    body = {"model": MODEL, "prompt": text}
    reply = httpx.post(
        worker_url + "/tokenize", json=body, headers=keyed(), timeout=60, trust_env=False
    )
    reply.raise_for_status()
    ids: list[int] = reply.json()["tokens"]
    return ids


def complete(base: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(
        base + "/v1/completions", json=body, headers=keyed(), timeout=300, trust_env=False
    )
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


def one_of_the_workers(worker_url: str, body: dict[str, Any], same: Any) -> dict[str, Any]:
    """The worker's answer to ``body`` that ``same`` finds equal to the gateway's (the last
    one tried when none does)."""
    for _ in range(ATTEMPTS):
        theirs = complete(worker_url, body)
        if same(theirs):
            break
    return theirs


@pytest.mark.parametrize("max_tokens", [0, 1])
@pytest.mark.parametrize("nested", [True, False])
def test_scores_of_a_token_prompt_are_the_workers_own(
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
    ours = complete(gateway, body)
    mine = ours["choices"][0]
    theirs = one_of_the_workers(
        worker_url, body, lambda t: t["choices"][0]["logprobs"] == mine["logprobs"]
    )
    own = theirs["choices"][0]
    assert mine["logprobs"] == own["logprobs"]  # tokens, offsets, scores and top logprobs
    assert mine["text"] == own["text"] and mine["text"].startswith(TEXT)
    scores = mine["logprobs"]["token_logprobs"]
    assert scores[0] is None and len(scores) == len(ids) + (1 if max_tokens else 0)
    assert all(isinstance(x, float) for x in scores[1:])
    assert ours["usage"]["prompt_tokens"] == len(ids) == theirs["usage"]["prompt_tokens"]
    assert ours["ttc"]["policy"] == "single"
    assert any("token-id prompt" in reason for reason in ours["ttc"]["reasons"])


def test_a_token_prompt_generates_what_the_worker_generates(gateway: str, worker_url: str) -> None:
    ids = token_ids(worker_url, "The capital of Japan is")
    body = {"model": "auto", "prompt": ids, "max_tokens": 8, "temperature": 0}
    ours = complete(gateway, body)
    text = ours["choices"][0]["text"]
    theirs = one_of_the_workers(
        worker_url, {**body, "model": MODEL}, lambda t: t["choices"][0]["text"] == text
    )
    assert text == theirs["choices"][0]["text"] != ""
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
