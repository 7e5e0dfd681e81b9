"""Live streams of multi-sample policies: ``Progress`` after each round, the answer as soon as
it is decided, and how each endpoint renders progress to the official Python SDK.

The backend is a fake (``tests.fakes.ScriptedBackend``) because what is asserted is *when* the
policy says something relative to the upstream calls it has made, which a real worker cannot
pace on demand, and the gateway's own rendering; tests/integration/test_streams.py streams the
same policies from the real vLLM worker.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import httpx2
import openai
from fastapi import FastAPI

from bench.streams import Chunks, ttc_of
from core.backend import Completion, Delta
from core.progress import LEADER_CHARS, Progress, short_leader
from core.request import Decision
from core.result import PolicyResult
from policies.adaptive_bon import AdaptiveBonParams, AdaptiveBonPolicy
from policies.cascade import CascadeParams, CascadePolicy
from policies.speculative import SpeculativePolicy
from server.app import create_app
from server.config import settings_from_dict
from tests.fakes import ScriptedBackend
from tests.unit.test_adaptive_bon import in_order, request
from tests.unit.test_cascade import answers_by_tier
from tests.unit.test_speculative import GOOD, SPEC, StepBackend, step, verdict
from tests.unit.test_speculative import request as step_request

# Gate off, rounds of 2 up to 6, and answers that never agree: three rounds, to max_samples.
SPLIT = AdaptiveBonParams(single_sample_confidence=None, min_samples=2, step=2, max_samples=6)
# Split in the first round, then agreeing: two rounds, and "Paris" wins 3 to 1.
AGREE_LATE = ("Paris", "Rome", "Paris", "Paris")
ADAPTIVE = {
    "ttc": {
        "policy": "adaptive_bon",
        "single_sample_confidence": None,
        "min_samples": 2,
        "max_samples": 4,
    }
}


async def test_adaptive_bon_says_each_round_before_drawing_the_next() -> None:
    backend = ScriptedBackend(in_order("Paris", "Rome"))
    events = AdaptiveBonPolicy(SPLIT).stream(request(), Decision("small", SPLIT), backend)
    seen: list[Progress] = []
    texts: list[str] = []
    async for event in events:
        if isinstance(event, Progress):
            assert not texts  # every round is said before any of the answer
            assert len(backend.calls) == event.round  # said before the next round is drawn
            seen.append(event)
        elif isinstance(event, Delta):
            texts.append(event.text)
        else:
            result = event
    assert [(p.round, p.samples) for p in seen] == [(1, 2), (2, 4), (3, 6)]
    assert [p.stop_reason for p in seen] == [None, None, "max_samples"]
    tokens = [p.completion_tokens for p in seen]
    assert tokens == sorted(tokens) and tokens[-1] == result.usage.total.completion_tokens
    last = seen[-1]
    assert (last.samples, last.leader) == (result.report["samples"], result.report["answer"])
    assert round(last.confidence or 0.0, 4) == result.report["confidence"]
    assert last.votes == result.report["votes"][last.leader]
    assert "".join(texts) == result.message


async def test_the_winners_thinking_streams_before_its_text() -> None:
    class Thinking(ScriptedBackend):
        async def chat(self, tier: str, body: dict[str, Any], **kw: Any) -> Completion:
            done = await super().chat(tier, body, **kw)
            thought = tuple(replace(c, reasoning=f"thinking {c.text}") for c in done.choices)
            return replace(done, choices=thought)

    spec = SPLIT.model_copy(update={"max_samples": 2})
    events = AdaptiveBonPolicy(spec).stream(
        request(), Decision("small", spec), Thinking(in_order("Paris"))
    )
    deltas = [e async for e in events if isinstance(e, Delta)]
    assert [(d.reasoning, d.text) for d in deltas[:2]] == [("thinking Paris", ""), ("", "Paris")]


async def test_cascade_relays_stage_rounds_then_its_verdict_then_the_large_answer() -> None:
    # exp(-2) per token: the gate sample is unsure, the small tier splits, the cascade escalates
    backend = answers_by_tier(["Lyon", "Nice", "Rome", "Lille"], "Paris", logprob=-2.0)
    spec = CascadeParams(small_tier="small", large_tier="large", small_max_samples=4)
    events = [
        e async for e in CascadePolicy(spec).stream(request(), Decision("small", spec), backend)
    ]
    progress = [e for e in events if isinstance(e, Progress)]
    result = events[-1]
    assert isinstance(result, PolicyResult) and result.report["escalated"] is True
    stages = [(p.stage, p.escalating) for p in progress]
    verdict_at = stages.index(("small", True))
    assert all(s == ("small", None) for s in stages[:verdict_at])
    assert all(s == ("large", None) for s in stages[verdict_at + 1 :])
    assert progress[verdict_at].samples == result.report["small"]["samples"] == 4
    assert [p.policy for p in progress] == ["cascade"] * len(progress)
    rounds = [p.round for p in progress]
    assert rounds == sorted(rounds) and progress[-1].samples == result.report["samples"]
    first_delta = next(i for i, e in enumerate(events) if isinstance(e, Delta))
    assert first_delta > events.index(progress[-1])  # the answer only once it is decided
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "Paris"


async def test_speculative_streams_a_step_before_drafting_the_next() -> None:
    backend = StepBackend(
        steps={"small": [step("France."), step("Paris.", "eos")]},
        verdicts=[verdict(GOOD), verdict(GOOD)],
    )
    stream = SpeculativePolicy(SPEC).stream(step_request(), Decision("small", SPEC), backend)
    first = await anext(stream)
    assert isinstance(first, Delta) and first.text == "France."
    assert len(backend.step_calls()) == 1 and len(backend.judge_calls()) == 1
    rest = [e async for e in stream]
    assert isinstance(rest[-1], PolicyResult) and rest[-1].message == "France.\n\nParis."


def test_a_long_leader_is_cut_to_a_label() -> None:
    assert short_leader("  the   answer\nis 4 ") == "the answer is 4"
    label = short_leader("x" * 500)
    assert label is not None and len(label) == LEADER_CHARS and label.endswith("…")
    assert short_leader(None) is None


# --- rendering, through the official Python SDK -----------------------------------------------


def app_with(backend: ScriptedBackend) -> FastAPI:
    config = {
        "tiers": {"small": {"model": "m", "endpoints": ["http://127.0.0.1:9"]}},
        "router": {"probe": {"mode": "never"}},
    }
    return create_app(settings_from_dict(config), backend=backend)


def sdk(app: FastAPI) -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key="x", http_client=http, max_retries=0)


def progress_of(obj: Any) -> dict[str, Any] | None:
    ttc = (obj.model_extra or {}).get("ttc") or {}
    found: dict[str, Any] | None = ttc.get("progress")
    return found


async def test_chat_progress_is_an_empty_delta_of_choice_0_before_the_content() -> None:
    client = sdk(app_with(ScriptedBackend(in_order("Paris", "Rome"))))
    stream = await client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body=ADAPTIVE,
    )
    chunks = [chunk async for chunk in stream]
    kinds = [
        "progress"
        if progress_of(c)
        else "content"
        if c.choices and c.choices[0].delta.content
        else "other"
        for c in chunks
    ]
    assert kinds.index("progress") < kinds.index("content")
    steps = [p for p in map(progress_of, chunks) if p]
    marks = [c for c in chunks if progress_of(c)]
    assert all(len(c.choices) == 1 and c.choices[0].delta.content is None for c in marks)
    assert all(c.choices[0].finish_reason is None for c in marks)
    assert [p["samples"] for p in steps] == [2, 4] and steps[-1]["stop_reason"] == "max_samples"
    final = (chunks[-1].model_extra or {})["ttc"]
    assert chunks[-1].usage is not None and final["samples"] == steps[-1]["samples"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text in {"Paris", "Rome"}


async def test_the_quickstart_loop_reads_choices_0_of_every_chunk() -> None:
    """OpenAI's quickstart reads ``chunk.choices[0].delta.content`` of every chunk: with
    progress chunks in the stream and no usage asked for, it must not meet an empty list."""
    client = sdk(app_with(ScriptedBackend(in_order("Paris", "Rome"))))
    stream = await client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Capital of France?"}],
        stream=True,
        extra_body=ADAPTIVE,
    )
    chunks = [chunk async for chunk in stream]
    assert any(progress_of(c) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) in {"Paris", "Rome"}


async def test_the_chat_stream_helper_assembles_the_answer_around_progress() -> None:
    client = sdk(app_with(ScriptedBackend(in_order("Paris"))))
    async with client.chat.completions.stream(
        model="auto",
        messages=[{"role": "user", "content": "Capital of France?"}],
        extra_body=ADAPTIVE,
    ) as stream:
        done = await stream.get_final_completion()
    assert done.choices[0].message.content == "Paris"


async def test_responses_progress_is_one_more_in_progress_event_before_the_output() -> None:
    client = sdk(app_with(ScriptedBackend(in_order(*AGREE_LATE))))
    raw = await client.responses.create(
        model="auto", input="Capital of France?", stream=True, extra_body=ADAPTIVE
    )
    kinds: list[str] = [event.type async for event in raw]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.in_progress") == 3  # one as OpenAI sends it, one per round
    assert kinds.index("response.output_text.delta") > len(kinds) - kinds[::-1].index(
        "response.in_progress"
    )
    assert kinds[-1] == "response.completed"
    async with client.responses.stream(
        model="auto", input="Capital of France?", extra_body=ADAPTIVE
    ) as helper:
        events = [event async for event in helper]
        final = await helper.get_final_response()
    progress = [progress_of(e.response) for e in events if e.type == "response.in_progress"]
    assert [p["samples"] for p in progress if p] == [2, 4]
    assert final.output_text == "Paris"


async def test_completions_progress_is_an_empty_piece_of_choice_0() -> None:
    client = sdk(app_with(ScriptedBackend(in_order(*AGREE_LATE))))
    stream = await client.completions.create(
        model="auto", prompt="Capital of France?", stream=True, extra_body=ADAPTIVE
    )
    chunks = [chunk async for chunk in stream]
    steps = [progress_of(c) for c in chunks if progress_of(c)]
    assert [p["samples"] for p in steps if p] == [2, 4]
    assert all(len(c.choices) == 1 and c.choices[0].text == "" for c in chunks if progress_of(c))
    assert all(c.choices for c in chunks)  # no include_usage: every chunk has choices[0]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Paris"


# --- the streams benchmark's reading of a stream -----------------------------------------------


def test_the_streams_bench_times_first_byte_progress_and_content() -> None:
    seen = Chunks(started=time.perf_counter())
    seen.line('data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}')
    seen.line(": keep-alive")
    seen.line('data: {"choices": [], "ttc": {"progress": {"round": 2, "samples": 4}}}')
    seen.line('data: {"choices": [{"index": 0, "delta": {"content": "Tokyo"}}]}')
    timing = seen.timing
    assert timing.first_byte is not None and timing.first_progress is not None
    assert timing.first_content is not None and timing.round_s is not None
    assert timing.first_byte <= timing.first_progress <= timing.first_content
    assert timing.round_s <= timing.first_progress and timing.rounds == 2
    assert ttc_of("adaptive_bon:single_sample_confidence=null:max_samples=4") == {
        "policy": "adaptive_bon",
        "single_sample_confidence": None,
        "max_samples": 4,
    }
