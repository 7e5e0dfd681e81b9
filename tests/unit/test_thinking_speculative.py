"""``speculative`` on a reasoning tier: the drafted and judged steps are the thinking.

A scripted ``StepBackend`` (tests/unit/test_speculative.py) stands in for the two tiers: the
purpose is the policy's own handling of thinking steps (what each step continues, how its
tokens are labelled, the answer after the closed thinking), which needs exact step texts.
Like vLLM's ``deepseek_r1`` parser on a continued message, the steps come back as reasoning.
"""

from __future__ import annotations

from dataclasses import replace

from core.backend import Completion, Delta
from core.profile import Thinking, ThinkingPlan
from core.request import Decision, GenRequest
from core.result import PolicyResult
from policies.speculative import SpeculativeParams, SpeculativePolicy
from tests.unit.test_speculative import BAD, GOOD, TIERS, StepBackend, request, step, verdict
from workers.profiles import PRESETS

PROFILE = PRESETS["smollm2_thinking"].thinking
assert PROFILE is not None
THINKING: Thinking = PROFILE
OPENING = THINKING.start + "\n"


def as_reasoning(done: Completion) -> Completion:
    """The step as the parser returns a continued thinking: all of it ``reasoning``."""
    choice = done.choices[0]
    return replace(done, choices=(replace(choice, text="", reasoning=choice.text),))


def decision(budget: int) -> Decision:
    spec = SpeculativeParams(**TIERS)
    return Decision("small", spec, thinking=ThinkingPlan(THINKING, budget, "test"))


def backend() -> StepBackend:
    return StepBackend(
        steps={
            "small": [as_reasoning(step("First, 2 + 3.")), as_reasoning(step("So five."))],
            "large": [as_reasoning(step("Then it is 5.")), as_reasoning(step("5", "eos"))],
        },
        verdicts=[verdict(GOOD), verdict(BAD)],
    )


async def run(backend: StepBackend, req: GenRequest, budget: int) -> PolicyResult:
    spec = SpeculativeParams(**TIERS, max_steps=2)
    return await SpeculativePolicy(spec).run(req, decision(budget), backend)


async def test_steps_continue_the_open_thinking_and_the_judge_tier_answers_after_it() -> None:
    fake = backend()
    result = await run(fake, request(), budget=64)
    bodies = [b for _, b in fake.step_calls()]
    first, second, rewrite, answer = bodies
    assert first["messages"][-1]["content"] == OPENING
    assert rewrite["messages"][-1]["content"] == OPENING + "First, 2 + 3.\n\n"
    closed = answer["messages"][-1]["content"]
    assert (
        closed == OPENING + "First, 2 + 3.\n\nThen it is 5." + THINKING.end + THINKING.answer_prompt
    )
    assert answer["max_tokens"] == THINKING.answer_tokens
    choice = result.choices[0]
    assert choice.reasoning == "First, 2 + 3.\n\nThen it is 5."
    assert choice.text == THINKING.answer_prompt.lstrip() + "5"
    assert result.report["trace_thinking_tokens"] == 4 + 4  # the kept steps
    assert result.report["thinking_tokens"] == (4 + 2) + 4  # all thought: the rejected draft too
    kinds = {(k, t): (u.completion_tokens, u.reasoning_tokens) for k, t, u in result.usage.items()}
    assert kinds[("draft", "small")] == (4 + 2, 4 + 2)  # both drafts were thinking
    assert kinds[("sample", "large")] == (4 + 1, 4)  # the rewrite thought; the answer did not


async def test_the_thinking_budget_bounds_the_steps() -> None:
    fake = backend()
    await run(fake, request(), budget=6)
    steps = [b for _, b in fake.step_calls()][:-1]
    assert steps[0]["max_tokens"] == 6
    assert all(b["max_tokens"] <= 6 for b in steps)


async def test_the_stream_sends_steps_as_reasoning_then_the_answer() -> None:
    fake = backend()
    spec = SpeculativeParams(**TIERS, max_steps=2)
    events = [e async for e in SpeculativePolicy(spec).stream(request(), decision(64), fake)]
    deltas = [e for e in events if isinstance(e, Delta)]
    assert "".join(d.reasoning for d in deltas) == "First, 2 + 3.\n\nThen it is 5."
    assert "".join(d.text for d in deltas) == THINKING.answer_prompt.lstrip() + "5"
    assert isinstance(events[-1], PolicyResult)
