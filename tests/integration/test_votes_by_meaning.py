"""Votes counted by meaning on the real SmolLM2 worker (issue 24, item 2).

SmolLM2-135M states one answer in many wordings ("The capital of Japan is Tokyo.", "The capital
of Japan is Tokyo, Japan's largest city ...", "Tokyo is ..."): samples that differ only in
wording must be one answer in the vote, and a sample with no answer must still be counted.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from policies.meaning import AnswerContext, read_answer
from policies.voting import NO_ANSWER
from tests.integration.conftest import MODEL, worker_key

QUESTION = "What is the capital of Japan?"
OPTIONS = "Which city is the capital of France? (A) Lyon (B) Paris"
# 24 tokens: the answer's sentence and the start of the remark the model adds to it, where
# its samples differ in wording; 0.7: the policy's own voting temperature.
MAX_TOKENS = 24
TEMPERATURE = 0.7
SAMPLES = 8
# Fixed best-of-8: one round, every sample votes (no gate, no early stop).
BEST_OF_8 = {
    "policy": "adaptive_bon",
    "min_samples": SAMPLES,
    "max_samples": SAMPLES,
    "single_sample_confidence": None,
}


def messages(question: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": question}]


def ttc_of(obj: Any) -> dict[str, Any]:
    ttc: dict[str, Any] = (obj.model_extra or {})["ttc"]
    return ttc


def test_real_samples_in_different_words_read_as_one_answer(worker_url: str) -> None:
    """The worker's own samples: several wordings, one key (the gateway's reading of them)."""
    # The session worker requires its key; a reused one without a key ignores it.
    with openai.OpenAI(base_url=worker_url + "/v1", api_key=worker_key(), max_retries=0) as worker:
        reply = worker.chat.completions.create(
            model=MODEL,
            messages=messages(QUESTION),
            n=SAMPLES,
            temperature=TEMPERATURE,
            max_tokens=MAX_TOKENS,
            seed=11,
        )
    context = AnswerContext.of(QUESTION)
    wordings: dict[str | None, set[str]] = defaultdict(set)
    for choice in reply.choices:
        text = choice.message.content or ""
        answer = read_answer(text, "auto", context)
        wordings[None if answer is None else answer.key].add(" ".join(text.lower().split()))
    assert len(wordings["tokyo"]) >= 2, wordings  # one answer, written more than one way
    split = [key for key in wordings if key is not None and key != "tokyo" and "tokyo" in key]
    assert not split, split  # no wording of Tokyo became an answer of its own


def test_the_gateways_vote_counts_every_sample_once_by_meaning(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=messages(QUESTION),
        max_tokens=MAX_TOKENS,
        temperature=TEMPERATURE,
        extra_body={"ttc": BEST_OF_8},
    )
    report = ttc_of(response)
    votes: dict[str, int] = report["votes"]
    assert report["samples"] == SAMPLES
    assert sum(votes.values()) == SAMPLES  # answered or not, every sample is in the tally
    assert votes.get("tokyo", 0) >= 2
    assert [key for key in votes if "tokyo" in key] == ["tokyo"]
    assert report["answer"] == "tokyo"


@pytest.mark.parametrize("question", [OPTIONS, OPTIONS + ". Answer with the letter."])
def test_options_vote_as_letters_whatever_the_samples_write(
    client: openai.OpenAI, question: str
) -> None:
    """With options in the prompt, "(B) Paris", "Paris" and "B" are one vote, "b"."""
    response = client.chat.completions.create(
        model=MODEL,
        messages=messages(question),
        max_tokens=MAX_TOKENS,
        temperature=TEMPERATURE,
        extra_body={"ttc": BEST_OF_8},
    )
    votes: dict[str, int] = ttc_of(response)["votes"]
    assert sum(votes.values()) == SAMPLES
    # a sample naming one option by its text votes for its letter ("paris or lyon" names none)
    worded = [key for key in votes if key != NO_ANSWER and ("paris" in key) != ("lyon" in key)]
    assert not worded, votes
