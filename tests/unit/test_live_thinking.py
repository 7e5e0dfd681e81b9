"""Streamed ``adaptive_bon`` on a reasoning tier: the live sample's thinking streams as it comes.

``RunawayThinker`` (tests/unit/test_thinking_budget.py) is a scripted upstream, not a worker:
the unit suite runs without network, and it thinks ``t0 t1 ...`` up to its budget exactly as
the thinking variant does under vLLM's ``deepseek_r1`` parser, so the order of events is known.
"""

from __future__ import annotations

from typing import Any

from tests.unit.test_progress import progress_of
from tests.unit.test_thinking_budget import QUESTION, RunawayThinker, gateway

BUDGET = 6
# Two rounds of two: the window rule needs four agreeing answers.
VOTE = {
    "policy": "adaptive_bon",
    "thinking_budget": BUDGET,
    "min_samples": 2,
    "max_samples": 4,
    "step": 2,
    "single_sample_confidence": None,
    "stopping": "window",
    "window": 4,
    "confidence": 0.99,
}


async def test_the_first_samples_thinking_streams_before_its_round_ends() -> None:
    backend = RunawayThinker(lambda t, b: [])
    stream = await gateway(backend).chat.completions.create(
        model="thinking",
        messages=QUESTION,
        temperature=0.7,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ttc": VOTE},
    )
    chunks = [chunk async for chunk in stream]
    kinds: list[str] = []
    thinking: list[str] = []
    for chunk in chunks:
        if progress_of(chunk) is not None:
            kinds.append("progress")
        for choice in chunk.choices:
            extra: dict[str, Any] = choice.delta.model_extra or {}
            if extra.get("reasoning"):
                kinds.append("thinking")
                thinking.append(str(extra["reasoning"]))
            if choice.delta.content:
                kinds.append("content")
    rounds = kinds.count("progress")
    assert rounds == 2
    # Each round: its first sample's thinking as it came, then the round's progress; the
    # answer only after the last round, and the winner's thinking is not sent again.
    assert kinds[0] == "thinking" and kinds.index("progress") > kinds.index("thinking")
    assert "".join(thinking).split() == [f"t{i}" for i in range(BUDGET)] * rounds
    assert kinds[-1] == "content" and "thinking" not in kinds[kinds.index("content") :]
    samples = [b for _, b in backend.calls if not b.get("continue_final_message")]
    assert all(b["n"] == 1 for b in samples)  # one stream per sample, so one can be watched
    final = (chunks[-1].model_extra or {})["ttc"]
    assert final["samples"] == 2 * rounds and final["thinking_tokens"] == BUDGET * 2 * rounds


async def test_a_streamed_response_shows_the_thinking_it_streamed_everywhere() -> None:
    """Responses API: the reasoning item of response.completed is the thinking that streamed."""
    backend = RunawayThinker(lambda t, b: [])
    stream = await gateway(backend).responses.create(
        model="thinking",
        input="What is 2 + 3?",
        temperature=0.7,
        stream=True,
        extra_body={"ttc": VOTE},
    )
    deltas: list[str] = []
    done_text = completed_text = None
    async for event in stream:
        if event.type == "response.reasoning_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.reasoning_text.done":
            done_text = event.text
        elif event.type == "response.completed":
            item = next(i for i in event.response.output if i.type == "reasoning")
            completed_text = "".join(part.text for part in item.content or ())
    assert deltas and "".join(deltas) == done_text == completed_text
