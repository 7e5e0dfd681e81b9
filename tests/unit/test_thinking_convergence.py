"""``convergence`` on a reasoning tier probes inside the thinking and stops it once it converged.

``SettlingThinker`` is a scripted upstream, not a worker: the purpose here is a trace that
converges at a known step, which a real worker cannot produce on demand (issue 13 allows it).
It thinks ``t0 t1 ...`` one token per delta with the worker's running usage after each (as
vLLM's ``continuous_usage_stats`` does) and never closes its thinking, like the thinking variant
under vLLM's ``deepseek_r1`` parser. A probe (a continued, closed thinking) is answered "5." once
the thinking it continues holds ``SETTLES_AT`` tokens, and with a hedge before; like the real
parser, the worker labels the probe's text ``reasoning``. tests/integration/test_reasoning.py
runs the same policy against the real thinking worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

from core.backend import Choice, Completion, Delta
from core.usage import TokenUsage
from server.app import create_app
from server.config import settings_from_dict

QUESTION: Any = [{"role": "user", "content": "What is 2 + 3?"}]
PROMPT_TOKENS = 20
SETTLES_AT = 40  # thinking tokens after which every probe says "5."
BUDGET = 400
PROBE_EVERY = 8
TTC = {"ttc": {"policy": "convergence", "thinking_budget": BUDGET, "probe_every": PROBE_EVERY}}


@dataclass
class SettlingThinker:
    probes: list[dict[str, Any]] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)
    streamed: int = 0  # thinking tokens the trace sent before it was closed
    closed_early: bool = False

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.probes.append(body)
        prefix = body["messages"][-1]["content"]
        thought = prefix.split("<think>", 1)[1].split("</think>", 1)[0].split()
        text = "5." if len(thought) >= SETTLES_AT else "hmm, maybe 6"
        choice = Choice(index=0, text="", reasoning=text, finish_reason="stop")
        return Completion((choice,), TokenUsage(PROMPT_TOKENS + len(thought), 2, 2), "m")

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        self.traces.append(body)
        limit = int(body["max_tokens"])
        finished = False
        try:
            for i in range(limit):
                await asyncio.sleep(0)  # a real stream yields to the loop between deltas
                self.streamed = i + 1
                yield Delta(reasoning=f"t{i} ")
                yield Delta(usage=TokenUsage(PROMPT_TOKENS, i + 1, 0))
            finished = True
            yield Delta(finish_reason="length")
        finally:
            self.closed_early = not finished


def gateway(backend: SettlingThinker) -> openai.AsyncOpenAI:
    settings = settings_from_dict(
        {
            "tiers": {
                "thinking": {
                    "model": "m",
                    "endpoints": ["http://127.0.0.1:9"],
                    "profile": "smollm2_thinking",
                }
            },
            "router": {"probe": {"mode": "never"}},
        }
    )
    app = create_app(settings, backend=backend)
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://gw")
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key="x", http_client=http)


def check_stopped_early(backend: SettlingThinker, report: dict[str, Any]) -> int:
    """The trace was closed upstream soon after the probes agreed; returns its thinking."""
    assert backend.closed_early, "the thinking trace must be cancelled upstream"
    assert report["early_stopped"] is True and report["stop_reason"] == "converged"
    assert report["answer"] == "5"
    thought = int(report["thinking_tokens"])
    # Two agreeing probes from SETTLES_AT on; each launched after PROBE_EVERY more tokens and
    # read while the trace goes on: stopped within a few probe intervals of settling.
    assert SETTLES_AT <= thought <= SETTLES_AT + 4 * PROBE_EVERY < BUDGET
    assert thought == backend.streamed
    assert report["reasoning_tokens_saved"] == BUDGET - thought
    return thought


def check_probes(backend: SettlingThinker) -> None:
    """Each probe continues the closed thinking with the profile's answer prompt."""
    assert backend.probes
    for body in backend.probes:
        prefix = body["messages"][-1]["content"]
        assert body["continue_final_message"] is True and body["temperature"] == 0.0
        assert prefix.startswith("<think>\n")
        assert prefix.endswith("</think>\n\nThe final answer is ")


async def test_probes_inside_the_thinking_stop_it_once_they_agree() -> None:
    backend = SettlingThinker()
    reply = await gateway(backend).chat.completions.create(
        model="thinking", messages=QUESTION, extra_body=TTC
    )
    report = (reply.model_extra or {})["ttc"]
    thought = check_stopped_early(backend, report)
    check_probes(backend)
    message = reply.choices[0].message
    assert message.content == "The final answer is 5."
    reasoning = str((message.model_extra or {})["reasoning"])
    assert reasoning.split() == [f"t{i}" for i in range(thought)]
    usage = reply.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == thought  # probes are answers
    assert usage.completion_tokens == thought + 2 * len(backend.probes)


async def test_the_stream_sends_the_thinking_then_the_converged_answer() -> None:
    backend = SettlingThinker()
    stream = await gateway(backend).chat.completions.create(
        model="thinking",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=TTC,
    )
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thinking = "".join(str((d.model_extra or {}).get("reasoning") or "") for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert content == "The final answer is 5."
    report = (chunks[-1].model_extra or {})["ttc"]
    thought = check_stopped_early(backend, report)
    assert thinking.split() == [f"t{i}" for i in range(thought)]


async def test_a_trace_that_never_settles_is_forced_to_answer_at_its_budget() -> None:
    """Probes that always hedge never stop it: the budget does, and the answer is forced."""
    backend = SettlingThinker()
    ttc = {"ttc": {**TTC["ttc"], "thinking_budget": SETTLES_AT - 1}}
    reply = await gateway(backend).chat.completions.create(
        model="thinking", messages=QUESTION, extra_body=ttc
    )
    report = (reply.model_extra or {})["ttc"]
    assert report["early_stopped"] is False and report["budget_forced"] is True
    assert report["thinking_tokens"] == SETTLES_AT - 1 and report["reasoning_tokens_saved"] == 0
    assert not backend.closed_early
    assert (reply.choices[0].message.content or "").startswith("The final answer is")
