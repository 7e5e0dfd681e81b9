"""Unit tests for policies.selection: free-form similarity, medoid, shape and USC (issue 24)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from policies.selection import (
    LONG_ANSWER_WORDS,
    USC_CANDIDATE_CHARS,
    USC_PREFIX,
    centrality_order,
    medoid,
    open_shape,
    similarity,
    usc_body,
    usc_pick,
)

POEM_A = "Rain taps the window softly, grey clouds drift over sleeping hills tonight"
POEM_B = "Silver drops on rooftops sing, the gutters hum a quiet song of spring"


def test_similarity_ignores_order_case_and_punctuation() -> None:
    assert similarity("Paris is the capital of France.", "The capital of France is Paris") == 1.0
    assert similarity("", "") == 1.0
    assert similarity("a b", "") == 0.0
    assert similarity(POEM_A, POEM_B) < 0.2
    # two six-word sentences that differ in their answer stay below the 0.8 default
    assert similarity("The capital of France is Paris.", "The capital of France is Lyon.") < 0.8


def test_medoid_is_the_most_central_text_and_prefers_the_first_on_ties() -> None:
    texts = [POEM_A, POEM_B, POEM_B + " again", POEM_A.upper()]
    position, score = medoid(texts)
    assert position == 0  # POEM_A and its twin tie with the POEM_B pair; the earliest wins
    assert 0.0 < score < 1.0
    assert medoid(["only"]) == (0, 1.0)
    assert medoid([POEM_A, POEM_B, POEM_B])[0] == 1


def test_centrality_order_puts_the_chosen_first() -> None:
    texts = [POEM_A, POEM_B, POEM_B + " again"]
    assert centrality_order(texts, 0) == [0, 1, 2]
    assert centrality_order(texts, 2) == [2, 1, 0]


@pytest.mark.parametrize(
    ("text", "answer", "is_open"),
    [
        ("Paris", "paris", False),
        (POEM_A, None, True),
        (" ".join(["word"] * (LONG_ANSWER_WORDS + 1)) + " 42", "42", True),
        (" ".join(["word"] * (LONG_ANSWER_WORDS + 1)) + r" so \boxed{42}", "42", False),
        (" ".join(["word"] * (LONG_ANSWER_WORDS + 1)) + " The answer is 42.", "42", False),
        (" ".join(["word"] * (LONG_ANSWER_WORDS - 1)) + " 42", "42", False),
    ],
)
def test_open_shape(text: str, answer: str | None, is_open: bool) -> None:
    assert (open_shape(text, answer) is not None) is is_open


def test_usc_body_extends_the_request_and_numbers_the_candidates() -> None:
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}]
    body = usc_body(conversation, ["one", "two " + "x" * 2 * USC_CANDIDATE_CHARS])
    messages = body["messages"]
    assert messages[:2] == conversation  # the request's prompt is a cached prefix
    assert messages[-1] == {"role": "assistant", "content": USC_PREFIX}
    ask = messages[-2]["content"]
    assert "Response 1:\none" in ask and "Response 2:\ntwo" in ask
    assert len(ask) < 2 * USC_CANDIDATE_CHARS  # a long candidate is shown by its opening
    assert (body["max_tokens"], body["temperature"], body["continue_final_message"]) == (
        1,
        0,
        True,
    )


def _top(**probabilities: float) -> dict[str, Any]:
    top = [{"token": token, "logprob": math.log(p)} for token, p in probabilities.items()]
    return {"logprobs": {"content": [{"token": "x", "top_logprobs": top}]}}


def test_usc_pick_reads_the_most_probable_candidate_number() -> None:
    assert usc_pick(_top(**{"2": 0.3, " 3": 0.6, "x": 0.1}), count=4) == 2
    assert usc_pick(_top(**{"7": 0.9, "1": 0.1}), count=4) == 0  # 7 names no candidate
    assert usc_pick({"message": {"content": "2"}}, count=3) == 1
    assert usc_pick({"message": {"content": "5"}}, count=3) is None
    assert usc_pick({"message": {"content": "none"}}, count=3) is None
