"""Live streams of multi-sample policies on the real SmolLM2 worker, read by the official SDKs.

A streamed ``adaptive_bon`` or ``cascade`` says something after every round (a chunk with empty
``choices`` and ``ttc.progress``), then streams the answer once it is decided, then the usage
chunk. What is checked: the order (progress before any content, usage last), that the progress
counts agree with the final ``ttc`` report, that the content is the answer the report names,
and that both the Python and the Node SDK parse every chunk. How soon the first byte comes is a
benchmark's business (``ttc bench streams``), not a test's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from policies.answers import extract_answer
from tests.integration.conftest import GatewayFactory, gateway_config

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of Japan?"}
]
# 24 tokens hold the model's one-sentence answer; the gate is off so the samples vote in rounds.
MAX_TOKENS = 24
ADAPTIVE = {
    "policy": "adaptive_bon",
    "single_sample_confidence": None,
    "min_samples": 2,
    "max_samples": 4,
}
ROLES = {"cascade": {"small_tier": "small", "large_tier": "large"}}
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def roles(worker_url: str, start_gateway: GatewayFactory) -> Iterator[openai.OpenAI]:
    """A gateway whose cascade runs small -> large (both served by the one worker)."""
    url = start_gateway(gateway_config(worker_url, policies=ROLES))
    with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300) as sdk:
        yield sdk


def extra(chunk: Any) -> dict[str, Any]:
    ttc: dict[str, Any] = (chunk.model_extra or {}).get("ttc") or {}
    return ttc


def progress_of(chunk: ChatCompletionChunk) -> dict[str, Any] | None:
    found: dict[str, Any] | None = extra(chunk).get("progress")
    return found


def streamed(client: openai.OpenAI, ttc: dict[str, Any]) -> list[ChatCompletionChunk]:
    stream = client.chat.completions.create(
        model="auto",
        messages=QUESTION,
        max_tokens=MAX_TOKENS,
        seed=7,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ttc": ttc},
    )
    return list(stream)


def check_order(chunks: list[ChatCompletionChunk]) -> tuple[list[dict[str, Any]], str, Any]:
    """Progress before content, the report on the finish chunk, usage last; returns the
    progress objects, the content and the final report."""
    steps = [p for p in map(progress_of, chunks) if p is not None]
    assert steps, "no progress chunk"
    marks = [c for c in chunks if progress_of(c) is not None]
    assert all(len(c.choices) == 1 and c.choices[0].delta.content is None for c in marks)
    first_progress = next(i for i, c in enumerate(chunks) if progress_of(c) is not None)
    contents = [i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content]
    assert contents and first_progress < contents[0]
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None and usage.usage.completion_tokens > 0
    finish = chunks[-2]
    assert finish.choices and finish.choices[0].finish_reason in {"stop", "length"}
    report = extra(finish)
    assert report["policy"] and "progress" not in report
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    samples = [p["samples"] for p in steps]
    assert samples == sorted(samples) and samples[-1] == report["samples"]
    tokens = [p["completion_tokens"] for p in steps]
    assert tokens == sorted(tokens) and tokens[-1] <= usage.usage.completion_tokens
    return steps, text, report


def test_streamed_adaptive_bon_says_each_round_then_streams_the_leader(
    client: openai.OpenAI,
) -> None:
    steps, text, report = check_order(streamed(client, ADAPTIVE))
    assert [p["round"] for p in steps] == list(range(1, report["rounds"] + 1))
    assert all(p["policy"] == "adaptive_bon" for p in steps)
    last = steps[-1]
    assert last["stop_reason"] == report["stop_reason"]
    assert all(p["stop_reason"] is None for p in steps[:-1])
    assert last["confidence"] == report["confidence"]
    assert text
    if report["answer"] is not None:  # the streamed text is one of the leader's samples
        assert extract_answer(text) == report["answer"]
        assert last["leader"] == report["answer"]  # short answers are not cut
        assert last["votes"] == report["votes"][report["answer"]]


def test_streamed_cascade_says_each_round_and_whether_it_escalates(
    roles: openai.OpenAI,
) -> None:
    steps, text, report = check_order(streamed(roles, {"policy": "cascade"}))
    assert all(p["policy"] == "cascade" for p in steps)
    verdicts = [p for p in steps if "escalating" in p]
    assert len(verdicts) == 1 and verdicts[0]["escalating"] == report["escalated"]
    assert verdicts[0]["tier"] == "small" and verdicts[0]["samples"] == report["small"]["samples"]
    stages = [p["stage"] for p in steps]
    assert set(stages) == ({"small", "large"} if report["escalated"] else {"small"})
    assert text
    if report["answer"] is not None:
        assert extract_answer(text) == report["answer"]


def test_the_responses_stream_says_each_round_as_the_python_sdk_expects(
    client: openai.OpenAI,
) -> None:
    with client.responses.stream(
        model="auto",
        input="What is the capital of Japan?",
        max_output_tokens=MAX_TOKENS,
        extra_body={"ttc": ADAPTIVE},
    ) as stream:
        events = list(stream)
        if events[-1].type == "response.completed":
            assert stream.get_final_response().output_text == events[-1].response.output_text
    # The samples are drawn at temperature 0.7 without a seed (the Responses API has none), so
    # the winner may run past max_output_tokens: then the stream ends, as OpenAI's does, with
    # response.incomplete, where the SDK's get_final_response() raises. Either end carries the
    # whole response.
    last = events[-1]
    assert last.type in {"response.completed", "response.incomplete"}
    final = last.response
    if last.type == "response.incomplete":
        assert final.incomplete_details is not None
        assert final.incomplete_details.reason == "max_output_tokens"
    kinds = [str(e.type) for e in events]
    first_text = kinds.index("response.output_text.delta")
    progress = [
        extra(e.response).get("progress")
        for e in events[:first_text]
        if e.type == "response.in_progress"
    ]
    assert progress[0] is None and all(progress[1:])  # OpenAI's own first, then each round
    assert len(progress) > 1 and "response.in_progress" not in kinds[first_text:]
    report = extra(final)
    assert progress[-1] is not None and progress[-1]["samples"] == report["samples"]
    deltas = "".join(
        getattr(e, "delta", "") for e in events if e.type == "response.output_text.delta"
    )
    assert deltas and deltas == final.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_the_node_sdk_parses_every_chunk_of_a_streamed_adaptive_bon(gateway: str) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the Node SDK check")
    if not (NODE_DIR / "node_modules" / "openai").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    done = subprocess.run(
        ["node", str(NODE_DIR / "stream_check.mjs"), gateway],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    chunks = seen["chat_stream"]
    progress = [i for i, c in enumerate(chunks) if c["progress"]]
    content = [i for i, c in enumerate(chunks) if c["content"]]
    assert progress and content and progress[0] < content[0]
    assert all(chunks[i]["choices"] == 1 and chunks[i]["content"] is None for i in progress)
    report = next(c["ttc"] for c in chunks if c["ttc"])
    assert chunks[progress[-1]]["progress"]["samples"] == report["samples"]
    assert chunks[-1]["choices"] == 0 and chunks[-1]["usage"]["completion_tokens"] > 0
    assert seen["chat_helper"]["content"] and seen["chat_helper"]["progress"] >= 1
    responses = seen["responses_stream"]
    assert responses["progress"] >= 1 and responses["kinds"][-1] in {
        "response.completed",
        "response.incomplete",
    }
    assert responses["text"] and responses["text"] == responses["output_text"]
