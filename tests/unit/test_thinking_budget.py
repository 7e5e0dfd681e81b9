"""Thinking budgets hold (budget forcing), every policy answers, bad thinking options are 400s.

``RunawayThinker`` is a scripted upstream, not a worker: the unit suite runs in process without
network. It behaves as the thinking variant under vLLM's ``deepseek_r1`` parser does
(ENVIRONMENT.md): it thinks until ``max_tokens`` and never closes its thinking, and labels a
forced continuation ``reasoning`` too. tests/integration/test_reasoning.py runs the real worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from fastapi import FastAPI

from core.backend import Choice, Completion, Delta
from core.usage import TokenUsage
from server.app import create_app
from server.config import settings_from_dict
from tests.fakes import ScriptedBackend
from workers.thinking_model import THINK_OPENING as OPENING

QUESTION: Any = [{"role": "user", "content": "What is 2 + 3?"}]
ANSWER = "5"


class RunawayThinker(ScriptedBackend):
    """Thinks ``t0 t1 ...`` until max_tokens (a runaway trace); a continued message gets "5"."""

    def _reply(self, body: dict[str, Any]) -> tuple[str, str, str, TokenUsage]:
        self.calls.append(("thinking", body))
        if body.get("continue_final_message"):  # the parser still calls it reasoning
            return ANSWER, "", "stop", TokenUsage(30, 1, 1)
        limit = int(body.get("max_tokens") or 2000)
        thought = " ".join(f"t{i}" for i in range(limit))
        return thought, "", "length", TokenUsage(20, limit, limit)

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        reasoning, text, finish, usage = self._reply(body)
        n = int(body.get("n") or 1)
        choices = tuple(
            Choice(index=i, text=text, finish_reason=finish, reasoning=reasoning) for i in range(n)
        )
        return Completion(
            choices,
            TokenUsage(
                usage.prompt_tokens, usage.completion_tokens * n, usage.reasoning_tokens * n
            ),
            "m",
        )

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        reasoning, _, finish, usage = self._reply(body)
        for word in reasoning.split(" "):
            yield Delta(reasoning=word + " ")
        yield Delta(finish_reason=finish)
        yield Delta(usage=usage)


def gateway(backend: ScriptedBackend) -> openai.AsyncOpenAI:
    settings = settings_from_dict(
        {
            "tiers": {
                "thinking": {
                    "model": "m",
                    "endpoints": ["http://127.0.0.1:9"],
                    "profile": "smollm2_thinking",
                },
                "plain": {"model": "m", "endpoints": ["http://127.0.0.1:9"]},
            },
            "router": {"probe": {"mode": "never"}},
        }
    )
    app: FastAPI = create_app(settings, backend=backend)
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key="x", http_client=http)


def ttc(**options: Any) -> Any:
    return {"ttc": {"policy": "single", **options}}


def thinking_of(message: Any) -> str:
    return str((message.model_extra or {}).get("reasoning") or "")


async def test_a_budget_of_n_stops_the_thinking_at_n_and_forces_an_answer() -> None:
    backend = RunawayThinker(lambda t, b: [])
    reply = await gateway(backend).chat.completions.create(
        model="thinking", messages=QUESTION, extra_body=ttc(thinking_budget=8)
    )
    message = reply.choices[0].message
    assert len(thinking_of(message).split()) == 8
    assert message.content == "The final answer is " + ANSWER  # labelled answer, not thinking
    report = (reply.model_extra or {})["ttc"]
    assert report["thinking_budget"] == 8 and report["thinking_tokens"] == 8
    assert report["budget_forced"] is True
    first, forced = (body for _, body in backend.calls)
    assert first["max_tokens"] == 8
    prefix = forced["messages"][-1]["content"]
    assert forced["continue_final_message"] and prefix.startswith(OPENING + "\nt0 t1")
    assert prefix.endswith("t7</think>\n\nThe final answer is ") and forced["min_tokens"] == 1
    assert reply.usage is not None and reply.usage.completion_tokens == 9  # both calls
    assert reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.reasoning_tokens == 8  # the answer is not


async def test_the_stream_sends_the_thinking_then_the_forced_answer_as_content() -> None:
    stream = await gateway(RunawayThinker(lambda t, b: [])).chat.completions.create(
        model="thinking",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=ttc(thinking_budget=5),
    )
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert len("".join(thinking_of(d) for d in deltas).split()) == 5
    assert "".join(d.content or "" for d in deltas).strip() == "The final answer is " + ANSWER
    final = chunks[-1]
    assert (final.model_extra or {})["ttc"]["budget_forced"] is True
    assert final.usage is not None and final.usage.completion_tokens == 6
    assert final.usage.completion_tokens_details is not None
    assert final.usage.completion_tokens_details.reasoning_tokens == 5


@pytest.mark.parametrize(("effort", "budget"), [("minimal", 0), ("low", 32), (None, 96)])
async def test_reasoning_effort_picks_the_tier_profiles_budget(
    effort: str | None, budget: int
) -> None:
    backend = RunawayThinker(lambda t, b: [])
    extra: Any = {"reasoning_effort": effort} if effort else {}
    reply = await gateway(backend).chat.completions.create(
        model="thinking", messages=QUESTION, extra_body={**ttc(), **extra}
    )
    report = (reply.model_extra or {})["ttc"]
    assert report["thinking_budget"] == budget and report["thinking_tokens"] == budget
    assert reply.choices[0].message.content == "The final answer is " + ANSWER
    assert len(backend.calls) == (1 if budget == 0 else 2)  # budget 0: no thinking call


async def test_max_tokens_that_thinking_would_exhaust_keeps_room_for_the_answer() -> None:
    backend = RunawayThinker(lambda t, b: [])
    reply = await gateway(backend).chat.completions.create(
        model="thinking", messages=QUESTION, max_tokens=10, extra_body=ttc(thinking_budget=64)
    )
    first, forced = (body for _, body in backend.calls)
    assert first["max_tokens"] == 5 and forced["max_tokens"] == 5  # 10 in all
    assert reply.choices[0].message.content == "The final answer is " + ANSWER
    assert reply.usage is not None and reply.usage.completion_tokens <= 10


@pytest.mark.parametrize(
    "policy", ["single", "adaptive_bon", "convergence", "cascade", "speculative"]
)
async def test_every_policy_holds_the_budget_and_answers(policy: str) -> None:
    backend = RunawayThinker(lambda t, b: [])
    reply = await gateway(backend).chat.completions.create(
        model="thinking",
        messages=QUESTION,
        temperature=0.7,
        extra_body={"ttc": {"policy": policy, "thinking_budget": 6}},
    )
    assert ANSWER in (reply.choices[0].message.content or "")
    assert (reply.model_extra or {})["ttc"]["budget_forced"] is True
    # Thinking calls: all but those continuing a closed thinking (forced answers, probes);
    # speculative's steps continue the open thinking.
    thinking_calls = [b for _, b in backend.calls if not closes_thinking(b)]
    assert thinking_calls and all(b["max_tokens"] <= 6 for b in thinking_calls)


def closes_thinking(body: dict[str, Any]) -> bool:
    last = body["messages"][-1]
    return bool(body.get("continue_final_message")) and "</think>" in str(last.get("content"))


@pytest.mark.parametrize(
    ("model", "extra", "param"),
    [
        ("thinking", {"ttc": {"thinking_budget": -1}}, "ttc.thinking_budget"),
        ("thinking", {"ttc": {"thinking_budget": 10**9}}, "ttc.thinking_budget"),
        ("thinking", {"ttc": {"thinking_budget": "lots"}}, "ttc.thinking_budget"),
        ("thinking", {"ttc": {"thinking_budget": True}}, "ttc.thinking_budget"),
        ("plain", {"ttc": {"thinking_budget": 8}}, "ttc.thinking_budget"),
        ("thinking", {"reasoning_effort": "extreme"}, "reasoning_effort"),
    ],
)
async def test_bad_thinking_options_are_400s_naming_the_field(
    model: str, extra: Any, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await gateway(RunawayThinker(lambda t, b: [])).chat.completions.create(
            model=model, messages=QUESTION, extra_body=extra
        )
    assert caught.value.status_code == 400
    body: Any = caught.value.body
    assert body["param"] == param


async def test_a_plain_tier_keeps_todays_behaviour() -> None:
    backend = ScriptedBackend(lambda t, b: ["4"])
    reply = await gateway(backend).chat.completions.create(
        model="plain", messages=QUESTION, reasoning_effort="minimal", extra_body=ttc()
    )
    assert reply.choices[0].message.content == "4"
    assert "thinking_budget" not in (reply.model_extra or {})["ttc"]
    assert "max_tokens" not in backend.calls[0][1]
