"""The answer shape the router predicts: closed questions vote, open prompts get one sample
under ``model: auto``, scoring requests are never probed, a tier's default length applies only
when the client sent none."""

from __future__ import annotations

from typing import Any

import pytest

from core.backend import Choice, Completion
from core.request import GenRequest
from core.usage import TokenUsage
from policies.config import PoliciesConfig
from router.answer_shape import predict_shape
from router.config import RouterConfig
from router.probe import top_logprobs
from router.router import Router
from tests.unit.test_router import constant


def chat(text: str, **fields: Any) -> GenRequest:
    return GenRequest(messages=({"role": "user", "content": text},), **fields)


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France? Answer with just the city name.",
        "What is the capital of Japan?",
        "Which is the capital of France? (A) Lyon (B) Paris",
        "Tom has 3 boxes of 12 apples and gives away 10. How many are left?",
        "What is 7 + 5?",
        "Is the earth round?",
        "At what temperature does water boil at sea level? Answer with a number.",
    ],
)
def test_closed_questions_are_closed(text: str) -> None:
    assert predict_shape(chat(text)).shape == "closed"


@pytest.mark.parametrize(
    "text",
    [
        "Write a short poem about rain",
        "Name a color.",
        "Explain how photosynthesis works.",
        "Write a Python function that reverses a string.",
        "Give me three tips for sleeping better.",
        "What are some good names for a cat?",
        "Draft an email to my landlord about a broken heater.",
        "hi",
    ],
)
def test_open_prompts_are_open(text: str) -> None:
    assert predict_shape(chat(text)).shape == "open"


def test_a_question_with_room_for_an_essay_is_open() -> None:
    text = "Why is the sky blue?"
    assert predict_shape(chat(text, sampling={"max_tokens": 16})).shape == "open"
    what = "What is the tallest mountain?"
    assert predict_shape(chat(what, sampling={"max_tokens": 16})).shape == "closed"
    assert predict_shape(chat(what, sampling={"max_tokens": 512})).shape == "open"


def test_text_continuations_are_open_unless_they_end_in_a_closed_question() -> None:
    prompt = "The capital of Italy is"
    assert predict_shape(chat(prompt, prompt=prompt)).shape == "open"
    qa = "Q: What is the capital of Italy?\nA:"
    assert predict_shape(chat(qa, prompt=qa)).shape == "closed"


def test_auto_answers_open_prompts_with_one_sample_and_says_why() -> None:
    router = Router(RouterConfig(predictor=constant(0.9)), PoliciesConfig(), ("small",))
    poem = router.decide(chat("Write a short poem about rain"))
    assert poem.params.name == "single" and poem.shape == "open"
    assert any(r.startswith("answer shape open") for r in poem.reasons)
    assert poem.report()["shape"] == "open"
    fact = router.decide(chat("What is the capital of Japan?"))
    assert fact.params.name == "adaptive_bon" and fact.shape == "closed"


def test_a_pinned_policy_is_kept_for_an_open_prompt() -> None:
    router = Router(RouterConfig(predictor=constant(0.9)), PoliciesConfig(), ("small",))
    pinned = router.decide(chat("Write a short poem about rain", ttc={"policy": "adaptive_bon"}))
    assert pinned.params.name == "adaptive_bon"


def test_scoring_requests_are_never_probed() -> None:
    config = RouterConfig(predictor=constant(0.5), probe={"mode": "always"})
    router = Router(config, PoliciesConfig(), ("small",))
    prompt = "The capital of Italy is"
    scoring = chat(prompt, prompt=prompt, passthrough={"echo": True})
    assert not router._wants_probe(scoring, 0.5)
    assert router._wants_probe(chat(prompt, prompt=prompt), 0.5)


def test_the_probe_reads_a_text_completions_logprobs() -> None:
    raw = {"logprobs": {"tokens": [" Rome"], "top_logprobs": [{" Rome": -0.1, " Paris": -2.5}]}}
    choice = Choice(0, " Rome", "length", raw=raw)
    completion = Completion(choices=(choice,), usage=TokenUsage(), model="small")
    assert top_logprobs(completion) == [-0.1, -2.5]


def test_a_tiers_default_length_applies_only_without_max_tokens() -> None:
    router = Router(RouterConfig(), PoliciesConfig(), ("small",), lengths={"small": 512})
    decision = router.decide(chat("Write a short poem about rain"))
    assert router.with_default_length(chat("x"), decision).max_tokens == 512
    sent = chat("x", sampling={"max_tokens": 16})
    assert router.with_default_length(sent, decision).max_tokens == 16
    scoring = chat("x", prompt="x", passthrough={"echo": True})
    assert router.with_default_length(scoring, decision).max_tokens is None
