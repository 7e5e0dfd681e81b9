"""Unit tests of the speculative policy and its step judge, against a scripted backend."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.backend import Choice, Completion, Delta
from core.request import Decision, GenRequest
from core.result import PolicyResult
from core.usage import TokenUsage
from policies.judge import (
    SCORE_PREFIX,
    STEP_MARK,
    choice_score,
    conversation_text,
    judge_body,
    score_digits,
)
from policies.speculative import SpeculativeParams, SpeculativePolicy

QUESTION = ({"role": "user", "content": "What is the capital of France?"},)

TIERS = {"draft_tier": "small", "judge_tier": "large"}
SPEC = SpeculativeParams(**TIERS)


def step(text: str, ended: str = "blank", tokens: int | None = None) -> Completion:
    """A step completion as vLLM returns it: ``stop_reason`` is the matched stop string."""
    stop_reason = {"blank": "\n\n", "eos": None, "length": None, "client": "END"}[ended]
    finish = "length" if ended == "length" else "stop"
    raw = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish,
        "stop_reason": stop_reason,
    }
    used = len(text.split()) if tokens is None else tokens
    choice = Choice(0, text, finish, raw=raw)
    return Completion(choices=(choice,), usage=TokenUsage(20, used), model="fake")


def verdict(probs: dict[str, float]) -> Completion:
    """A judge completion whose one token's top_logprobs hold ``probs``."""
    top = [{"token": t, "logprob": math.log(p)} for t, p in probs.items()]
    sampled = max(probs, key=lambda t: probs[t]) if probs else ""
    first_token = {"token": sampled, "logprob": -0.1, "top_logprobs": top}
    raw = {
        "index": 0,
        "message": {"content": sampled},
        "finish_reason": "length",
        "logprobs": {"content": [first_token]},
    }
    choice = Choice(0, sampled, "length", raw=raw)
    return Completion(choices=(choice,), usage=TokenUsage(50, 1), model="fake")


GOOD = {"8": 0.9, "2": 0.1}
BAD = {"1": 0.8, "8": 0.2}


@dataclass
class StepBackend:
    """Step calls pop ``steps[tier]``; judge calls (they ask for top_logprobs) pop ``verdicts``."""

    steps: dict[str, list[Completion]]
    verdicts: list[Completion] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.calls.append((tier, body))
        queue = self.verdicts if "top_logprobs" in body else self.steps[tier]
        assert queue, f"unexpected call on {tier}"
        return queue.pop(0)

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        raise AssertionError("speculative never streams upstream")
        yield Delta()

    def judge_calls(self) -> list[tuple[str, dict[str, Any]]]:
        return [(t, b) for t, b in self.calls if "top_logprobs" in b]

    def step_calls(self) -> list[tuple[str, dict[str, Any]]]:
        return [(t, b) for t, b in self.calls if "top_logprobs" not in b]


def request(max_tokens: int | None = None, **sampling: Any) -> GenRequest:
    if max_tokens is not None:
        sampling["max_tokens"] = max_tokens
    return GenRequest(messages=QUESTION, sampling=sampling, request_id="r1")


async def run(backend: StepBackend, req: GenRequest | None = None, **params: Any) -> PolicyResult:
    spec = SpeculativeParams(**{**TIERS, **params})
    return await SpeculativePolicy(spec).run(req or request(), Decision("small", spec), backend)


def usage_kinds(result: PolicyResult) -> dict[tuple[str, str], int]:
    return {(kind, tier): u.completion_tokens for kind, tier, u in result.usage.items()}


# --- the judge's score ---------------------------------------------------------------------


def top(probs: dict[str, float]) -> list[dict[str, Any]]:
    return [{"token": t, "logprob": math.log(p)} for t, p in probs.items()]


def test_expected_score_renormalises_over_digit_tokens() -> None:
    # (7 * 0.3 + 9 * 0.1) / 0.4: the 0.6 on a non-digit token does not drag the score down.
    assert score_digits(top({"7": 0.3, "The": 0.6, "9": 0.1}), "expected") == pytest.approx(7.5)


def test_digit_tokens_with_spaces_count_for_their_digit() -> None:
    probs = {" 7": 0.3, "7": 0.3, "8": 0.4}
    assert score_digits(top(probs), "top") == 7.0
    assert score_digits(top(probs), "expected") == pytest.approx(7.4)


def test_top_score_prefers_lower_digit_on_tie_and_ignores_multi_digit_tokens() -> None:
    assert score_digits(top({"10": 0.5, "6": 0.25, "3": 0.25}), "top") == 3.0


def test_no_digit_candidates_give_no_score() -> None:
    assert score_digits(top({"The": 0.7, "\n": 0.3}), "expected") is None
    assert score_digits([], "top") is None


def test_choice_score_reads_top_logprobs_then_falls_back_to_sampled_digit() -> None:
    assert choice_score(verdict({"9": 0.5, "5": 0.5}).choices[0].raw, "expected") == 7.0
    no_logprobs = {"message": {"content": "6"}, "logprobs": None}
    assert choice_score(no_logprobs, "expected") == 6.0
    assert choice_score({"message": {"content": "Good"}}, "top") is None


def test_judge_body_marks_last_step_and_prefills_score() -> None:
    body = judge_body(QUESTION, "Step one.", "Paris is the capital.")
    system, user, prefill = body["messages"]
    assert system["role"] == "system" and "0 to 9" in system["content"]
    assert "capital of France" in user["content"]
    assert user["content"].index("Step one.") < user["content"].index(STEP_MARK)
    assert user["content"].index(STEP_MARK) < user["content"].index("Paris is the capital.")
    assert prefill == {"role": "assistant", "content": SCORE_PREFIX}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert (body["max_tokens"], body["temperature"], body["top_logprobs"]) == (1, 0, 20)
    assert body["logprobs"] is True


def test_judge_question_reads_text_parts_and_skips_the_system_prompt() -> None:
    parts = [{"type": "text", "text": "Capital "}, {"type": "text", "text": "of Peru?"}]
    conversation = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": parts})
    assert conversation_text(conversation) == "Capital of Peru?"


# --- drafting, judging, rewriting ------------------------------------------------------------


async def test_accepted_drafts_continue_the_assistant_message_until_an_answer() -> None:
    backend = StepBackend(
        steps={"small": [step("France is a country."), step("The answer is Paris.")]},
        verdicts=[verdict(GOOD), verdict(GOOD)],
    )
    result = await run(backend)
    assert result.message == "France is a country.\n\nThe answer is Paris."
    assert result.choices[0].finish_reason == "stop"
    assert result.report["stop_reason"] == "answer"
    assert (result.report["steps"], result.report["steps_accepted"]) == (2, 2)
    assert result.report["acceptance_rate"] == 1.0
    (_, first), (_, second) = backend.step_calls()
    assert first["messages"][:-1] == list(QUESTION)
    assert first["messages"][-1] == {"role": "assistant", "content": ""}
    assert second["messages"][-1] == {"role": "assistant", "content": "France is a country.\n\n"}
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    assert second["stop"] == ["\n\n"] and second["max_tokens"] == 64
    assert [tier for tier, _ in backend.judge_calls()] == ["large", "large"]


async def test_rejected_draft_is_rewritten_by_the_judge_tier_and_still_counted() -> None:
    backend = StepBackend(
        steps={
            "small": [step("Lyon is the capital.", tokens=5)],
            "large": [step("The answer is Paris.", tokens=6)],
        },
        verdicts=[verdict(BAD)],
    )
    result = await run(backend)
    assert result.message == "The answer is Paris."
    assert result.report["steps_rejected"] == 1 and result.report["steps_accepted"] == 0
    assert result.report["steps_drafted"] == 1 and result.report["acceptance_rate"] == 0.0
    assert usage_kinds(result) == {
        ("draft", "small"): 5,
        ("judge", "large"): 1,
        ("sample", "large"): 6,
    }
    assert result.report["tokens_by_tier"]["small"]["completion_tokens"] == 5
    rewrite = backend.step_calls()[1]
    assert rewrite[0] == "large" and rewrite[1]["messages"][-1]["content"] == ""


async def test_threshold_and_top_score_mode_decide_acceptance() -> None:
    # Expected score 6.85 clears 6 but not 7; the top digit, 9, clears 7.
    probs = {"9": 0.45, "4": 0.35, "7": 0.2}
    for mode, threshold, accepted in (("expected", 6.0, 1), ("expected", 7.0, 0), ("top", 7.0, 1)):
        backend = StepBackend(
            steps={"small": [step("Paris.", "eos")], "large": [step("Paris!", "eos")]},
            verdicts=[verdict(probs)],
        )
        result = await run(backend, score=mode, accept_threshold=threshold)
        assert result.report["steps_accepted"] == accepted, (mode, threshold)


async def test_judge_without_digits_rejects_the_draft() -> None:
    backend = StepBackend(
        steps={"small": [step("Maybe.", "eos")], "large": [step("Paris.", "eos")]},
        verdicts=[verdict({"Hello": 0.9})],
    )
    result = await run(backend)
    assert result.message == "Paris." and result.report["judge_scores"] == [None]


async def test_empty_draft_goes_to_the_judge_tier_without_a_judge_call() -> None:
    backend = StepBackend(steps={"small": [step("")], "large": [step("Paris.", "eos")]})
    result = await run(backend)
    assert result.message == "Paris." and backend.judge_calls() == []
    assert result.report["steps_rejected"] == 1


# --- stopping ------------------------------------------------------------------------------


async def test_end_of_sequence_stops_the_chain() -> None:
    backend = StepBackend(
        steps={"small": [step("Paris, of course.", "eos")]}, verdicts=[verdict(GOOD)]
    )
    result = await run(backend)
    assert result.report["stop_reason"] == "eos" and result.message == "Paris, of course."


async def test_repeated_step_stops_without_repeating_it() -> None:
    backend = StepBackend(
        steps={"small": [step("Think about France."), step("think about  France!")]},
        verdicts=[verdict(GOOD)],
    )
    result = await run(backend)
    assert result.report["stop_reason"] == "repeated_step"
    assert result.message == "Think about France."
    assert result.report["steps_drafted"] == 1 and len(backend.judge_calls()) == 1
    assert usage_kinds(result)[("draft", "small")] == 6  # the repeat's tokens are spent


async def test_max_steps_ends_with_length() -> None:
    texts = ["One.", "Two.", "Three."]
    backend = StepBackend(steps={"small": [step(t) for t in texts]}, verdicts=[verdict(GOOD)] * 3)
    result = await run(backend, max_steps=2)
    assert result.report["stop_reason"] == "max_steps" and result.report["steps"] == 2
    assert result.choices[0].finish_reason == "length"
    assert result.message == "One.\n\nTwo."


async def test_token_budget_caps_every_step_and_the_total() -> None:
    backend = StepBackend(
        steps={"small": [step("a b c d e f", "length"), step("g h i j", "length")]},
        verdicts=[verdict(GOOD)] * 2,
    )
    result = await run(backend, request(max_tokens=10), max_step_tokens=6)
    assert [body["max_tokens"] for _, body in backend.step_calls()] == [6, 4]
    assert result.report["stop_reason"] == "max_tokens"
    assert result.choices[0].finish_reason == "length"
    # A step cut by its token limit is continued directly, not after a blank line.
    assert backend.step_calls()[1][1]["messages"][-1]["content"] == "a b c d e f"
    assert result.message == "a b c d e fg h i j"


async def test_client_stop_string_ends_the_chain_and_is_forwarded() -> None:
    backend = StepBackend(steps={"small": [step("Paris", "client")]}, verdicts=[verdict(GOOD)])
    result = await run(backend, request(stop="END", n=3, logprobs=True))
    body = backend.step_calls()[0][1]
    assert body["stop"] == ["\n\n", "END"]
    assert "n" not in body and "logprobs" not in body
    assert result.report["stop_reason"] == "stop_sequence"


async def test_whole_conversation_is_sent_as_messages() -> None:
    conversation = (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "And of France?"},
    )
    backend = StepBackend(steps={"small": [step("Paris.", "eos")]}, verdicts=[verdict(GOOD)])
    req = GenRequest(messages=conversation, request_id="r2")
    await SpeculativePolicy(SPEC).run(req, Decision("small", SPEC), backend)
    assert backend.step_calls()[0][1]["messages"][:4] == list(conversation)
    judged = backend.judge_calls()[0][1]["messages"][1]["content"]
    assert "Capital of Italy?" in judged and "And of France?" in judged


# --- streaming and cancellation --------------------------------------------------------------


async def test_stream_emits_each_settled_step_then_finish_then_result() -> None:
    backend = StepBackend(
        steps={"small": [step("France."), step("Lyon?")], "large": [step("Paris.", "eos")]},
        verdicts=[verdict(GOOD), verdict(BAD)],
    )
    spec = SPEC
    events = [
        e async for e in SpeculativePolicy(spec).stream(request(), Decision("small", spec), backend)
    ]
    *deltas, finish, result = events
    assert [d.text for d in deltas if isinstance(d, Delta)] == ["France.", "\n\nParis."]
    assert isinstance(finish, Delta) and finish.finish_reason == "stop"
    assert isinstance(result, PolicyResult) and result.message == "France.\n\nParis."
    assert result.report["steps_rejected"] == 1


@dataclass
class HangingBackend(StepBackend):
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.calls.append((tier, body))
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_cancellation_propagates_to_the_upstream_call() -> None:
    backend = HangingBackend(steps={})
    task = asyncio.create_task(run(backend))
    await backend.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(backend.calls) == 1
