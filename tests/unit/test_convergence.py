"""Unit tests of the ``convergence`` policy against a fake backend (no network).

``ChainBackend`` streams a scripted chain one delta per token, yielding to the event loop
between deltas as a real stream does, and answers probes with ``probe(call_number, body)``.
It records whether the chain stream was closed before its end, and how probes ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.backend import Choice, Completion, Delta
from core.contract import prompt_estimate
from core.errors import UpstreamError
from core.request import Decision, GenRequest
from core.result import PolicyResult
from core.usage import TokenUsage
from policies import registry
from policies.convergence import ConvergenceParams, ConvergencePolicy, final_line, stopped
from policies.probing import probe_answer, probe_body

CHAIN = [f"s{i} " for i in range(100)]
PROMPT_TOKENS = 37
PROBE_PROMPT_TOKENS = 50
BUDGET = 200
QUESTION = {"role": "user", "content": "What is the capital of France? Think step by step."}

ProbeScript = Callable[[int, dict[str, Any]], str]


def always(text: str) -> ProbeScript:
    return lambda _call, _body: text


@dataclass
class ChainBackend:
    chain: list[str]
    probe: ProbeScript
    probe_delay_s: float = 0.0
    probe_blocks: bool = False  # probes never answer (until cancelled)
    running_usage: bool = False  # send cumulative usage after every delta, as vLLM can
    finish: str = "stop"
    fail_after: int | None = None  # the chain stream breaks after this many deltas
    chain_bodies: list[dict[str, Any]] = field(default_factory=list)
    probe_bodies: list[dict[str, Any]] = field(default_factory=list)
    affinities: list[str | None] = field(default_factory=list)
    streamed: int = 0
    stream_finished: bool = False
    stream_closed: bool = False
    in_flight: int = 0
    max_in_flight: int = 0
    probes_cancelled: int = 0

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        call = len(self.probe_bodies)
        self.probe_bodies.append(body)
        self.affinities.append(affinity)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.probe_blocks:
                await asyncio.Event().wait()
            await asyncio.sleep(self.probe_delay_s)
            text = self.probe(call, body)
        except asyncio.CancelledError:
            self.probes_cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        choice = Choice(index=0, text=text, finish_reason="length")
        used = TokenUsage(PROBE_PROMPT_TOKENS, len(text.split()))
        return Completion(choices=(choice,), usage=used, model="fake")

    async def stream_chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> AsyncIterator[Delta]:
        self.chain_bodies.append(body)
        self.affinities.append(affinity)
        try:
            for i, text in enumerate(self.chain):
                if i == self.fail_after:
                    raise UpstreamError("worker stream broke")
                await asyncio.sleep(0)
                self.streamed += 1
                last = i == len(self.chain) - 1
                yield Delta(text=text, finish_reason=self.finish if last else None)
                if self.running_usage:
                    yield Delta(usage=TokenUsage(PROMPT_TOKENS, i + 1))
            if not self.running_usage:
                yield Delta(usage=TokenUsage(PROMPT_TOKENS, len(self.chain)))
            self.stream_finished = True
        finally:
            self.stream_closed = True


def request(**passthrough: Any) -> GenRequest:
    return GenRequest(
        messages=(QUESTION,),
        sampling={"max_tokens": BUDGET, "n": 2, "logprobs": True},
        passthrough=passthrough,
        request_id="req-1",
    )


def policy_and_decision(**params: Any) -> tuple[ConvergencePolicy, Decision]:
    spec = ConvergenceParams(**{"probe_every": 8, **params})
    return ConvergencePolicy(spec), Decision(tier="small", params=spec)


async def run(backend: ChainBackend, **params: Any) -> PolicyResult:
    policy, decision = policy_and_decision(**params)
    return await policy.run(request(), decision, backend)


def probe_partial(body: dict[str, Any]) -> str:
    content: str = body["messages"][-1]["content"]
    return content.removesuffix(ConvergenceParams().probe_suffix)


async def test_converges_and_closes_the_chain_early() -> None:
    backend = ChainBackend(CHAIN, always(" Paris.\nIt is in the north."))
    result = await run(backend)

    assert backend.stream_closed and not backend.stream_finished
    assert backend.streamed < len(CHAIN)
    streamed_text = "".join(CHAIN[: backend.streamed])
    assert result.message == streamed_text + "\n\nFinal answer: Paris."
    assert result.choices[0].finish_reason == "stop"
    report = result.report
    assert report["early_stopped"] is True and report["stop_reason"] == "converged"
    assert report["answer"] == "paris"
    assert report["chain_tokens"] == backend.streamed < len(CHAIN)
    assert report["tokens_saved"] == BUDGET - backend.streamed
    assert report["probes"] >= 2


async def test_disagreeing_probes_never_stop_the_chain() -> None:
    backend = ChainBackend(CHAIN, lambda call, _body: f" {call}")
    result = await run(backend)

    assert backend.stream_finished
    assert result.message == "".join(CHAIN)
    report = result.report
    assert report["early_stopped"] is False and report["stop_reason"] == "completed"
    assert report["tokens_saved"] == 0 and report["chain_tokens"] == len(CHAIN)
    assert report["probes"] >= 2


async def test_hedging_probes_block_the_stop() -> None:
    backend = ChainBackend(CHAIN, always(" Paris.\nHmm, or is it Lyon?"))
    result = await run(backend)

    assert backend.stream_finished
    assert result.report["stop_reason"] == "completed"
    assert result.message == "".join(CHAIN)


async def test_an_early_hedge_only_delays_the_stop() -> None:
    def probe(call: int, _body: dict[str, Any]) -> str:
        return " Paris, but wait." if call == 0 else " Paris."

    backend = ChainBackend(CHAIN, probe)
    result = await run(backend)

    assert result.report["stop_reason"] == "converged"
    assert len(backend.probe_bodies) == 3  # the hedging probe cannot be one of the agreeing two


async def test_length_is_the_stop_reason_when_the_chain_runs_out_of_budget() -> None:
    backend = ChainBackend(CHAIN, lambda call, _body: f" {call}", finish="length")
    result = await run(backend)

    assert result.report["stop_reason"] == "length"
    assert result.choices[0].finish_reason == "length"


async def test_probe_tokens_are_ledgered_as_kind_probe() -> None:
    backend = ChainBackend(CHAIN, always(" Paris is the answer"))
    result = await run(backend)

    details = {item["kind"]: item for item in result.usage.details()}
    finished = len(backend.probe_bodies) - result.report["probes_cancelled"]
    assert finished >= 2
    assert details["probe"]["tier"] == "small"
    assert details["probe"]["prompt_tokens"] == PROBE_PROMPT_TOKENS * finished
    assert details["probe"]["completion_tokens"] == 4 * finished
    assert details["sample"]["completion_tokens"] == backend.streamed
    assert result.report["probe_tokens"] == (PROBE_PROMPT_TOKENS + 4) * finished
    total = result.usage.total
    assert total.prompt_tokens == sum(d["prompt_tokens"] for d in details.values())
    assert total.completion_tokens == sum(d["completion_tokens"] for d in details.values())


@pytest.mark.parametrize("running_usage", [True, False])
async def test_a_stopped_chain_is_charged_what_it_streamed(running_usage: bool) -> None:
    backend = ChainBackend(CHAIN, always(" Paris."), running_usage=running_usage)
    result = await run(backend)

    sample = next(d for d in result.usage.details() if d["kind"] == "sample")
    assert result.report["early_stopped"] is True
    assert result.report["usage_estimated"] is not running_usage
    # Without upstream running usage the prompt is estimated as the meter bills it.
    prompt = PROMPT_TOKENS if running_usage else prompt_estimate({"messages": [QUESTION]})
    assert (sample["prompt_tokens"], sample["completion_tokens"]) == (prompt, backend.streamed)


async def test_without_max_tokens_savings_count_against_the_default_budget() -> None:
    backend = ChainBackend(CHAIN, always(" Paris."))
    policy, decision = policy_and_decision(default_budget=500)
    result = await policy.run(GenRequest(messages=(QUESTION,)), decision, backend)

    assert "max_tokens" not in backend.chain_bodies[0]  # the model's context stays the limit
    assert result.report["tokens_saved"] == 500 - backend.streamed


async def test_probe_continues_the_partial_chain_on_the_same_worker() -> None:
    backend = ChainBackend(CHAIN, always(" Paris."))
    await run(backend, probe_max_tokens=12)

    chain_body, probe = backend.chain_bodies[0], backend.probe_bodies[0]
    assert chain_body["max_tokens"] == BUDGET and "n" not in chain_body
    assert probe["messages"][:-1] == [QUESTION]
    last = probe["messages"][-1]
    assert last["role"] == "assistant"
    assert last["content"] == "".join(CHAIN[:8]).rstrip() + ConvergenceParams().probe_suffix
    assert probe["continue_final_message"] is True and probe["add_generation_prompt"] is False
    assert probe["max_tokens"] == 12 and probe["temperature"] == 0
    assert "logprobs" not in probe and "n" not in probe
    assert probe["stop"] == ["\n"]  # only the answer line is read: the probe ends there
    assert set(backend.affinities) == {"req-1"}


def test_probe_keeps_the_client_stop_strings_and_adds_its_own() -> None:
    for client_stop, expected in (("END", ["END", "\n"]), (["a", "\n"], ["a", "\n"])):
        req = GenRequest(messages=(QUESTION,), sampling={"stop": client_stop})
        assert probe_body(req, "so", ConvergenceParams())["stop"] == expected
    no_stop = ConvergenceParams(probe_stop=[])
    assert "stop" not in probe_body(GenRequest(messages=(QUESTION,)), "so", no_stop)


async def test_probe_extends_a_final_assistant_message_the_client_continues() -> None:
    backend = ChainBackend(CHAIN, always(" Paris."))
    policy, decision = policy_and_decision()
    req = GenRequest(
        messages=(QUESTION, {"role": "assistant", "content": "Let me think."}),
        passthrough={"continue_final_message": True, "add_generation_prompt": False},
        request_id="req-2",
    )
    await policy.run(req, decision, backend)

    messages = backend.probe_bodies[0]["messages"]
    assert len(messages) == 2
    assert messages[-1]["content"].startswith("Let me think.s0 s1")


async def test_a_step_boundary_triggers_a_probe_before_probe_every() -> None:
    chain = ["First ", "step.", "\n", "\n", "Second ", *CHAIN]
    backend = ChainBackend(chain, lambda call, _body: f" {call}")
    await run(backend, probe_every=64)

    assert probe_partial(backend.probe_bodies[0]) == "First step."


async def test_max_probes_bounds_the_probes() -> None:
    backend = ChainBackend(CHAIN, lambda call, _body: f" {call}")
    result = await run(backend, max_probes=3)

    assert len(backend.probe_bodies) == 3
    assert result.report["probes"] == 3


@pytest.mark.parametrize("limit", [1, 2])
async def test_probes_in_flight_stay_within_the_limit(limit: int) -> None:
    backend = ChainBackend(CHAIN, lambda call, _body: f" {call}", probe_delay_s=0.005)
    await run(backend, probe_every=4, max_concurrent_probes=limit)

    assert backend.max_in_flight == limit


async def test_probes_still_running_when_the_chain_ends_are_cancelled() -> None:
    backend = ChainBackend(CHAIN, always(" Paris."), probe_blocks=True)
    result = await run(backend)

    assert backend.probes_cancelled == 1
    assert result.report["probes_cancelled"] == 1 and result.report["probes"] == 1
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_failed_probe_is_a_probe_without_answer() -> None:
    def probe(_call: int, _body: dict[str, Any]) -> str:
        raise UpstreamError("probe failed")

    backend = ChainBackend(CHAIN, probe)
    result = await run(backend)

    assert result.report["stop_reason"] == "completed"
    assert result.report["probe_errors"] == result.report["probes"] >= 2


async def test_a_chain_error_cancels_probes_in_flight() -> None:
    backend = ChainBackend(CHAIN, always(" Paris."), probe_blocks=True, fail_after=20)
    with pytest.raises(UpstreamError):
        await run(backend)

    assert backend.probes_cancelled == 1
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_cancelling_the_request_cancels_the_chain_and_probes() -> None:
    backend = ChainBackend(CHAIN, always(" Paris."), probe_blocks=True)
    task = asyncio.create_task(run(backend))
    while backend.streamed < 20:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert backend.stream_closed and not backend.stream_finished
    assert backend.probes_cancelled == 1
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_closing_the_stream_early_cancels_the_chain_and_probes() -> None:
    backend = ChainBackend(CHAIN, always(" Paris."), probe_blocks=True)
    policy, decision = policy_and_decision()
    events = policy.stream(request(), decision, backend)
    for _ in range(20):
        await anext(events)
    await events.aclose()

    assert backend.stream_closed and not backend.stream_finished
    assert backend.probes_cancelled == 1
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_stream_sends_the_chain_then_the_final_answer_line() -> None:
    backend = ChainBackend(CHAIN, always(" Paris."))
    policy, decision = policy_and_decision()
    events = [e async for e in policy.stream(request(), decision, backend)]

    result = events[-1]
    assert isinstance(result, PolicyResult)
    deltas = [e for e in events[:-1] if isinstance(e, Delta)]
    assert len(deltas) == len(events) - 1
    assert "".join(d.text for d in deltas) == result.message
    assert deltas[-1].text == "\n\nFinal answer: Paris." and deltas[-1].finish_reason == "stop"
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert all(d.text in CHAIN for d in deltas[:-1])


async def test_stream_of_a_completed_chain_ends_with_the_upstream_finish_reason() -> None:
    backend = ChainBackend(CHAIN, lambda call, _body: f" {call}", finish="length")
    policy, decision = policy_and_decision()
    events = [e async for e in policy.stream(request(), decision, backend)]

    last_delta = events[-2]
    assert isinstance(last_delta, Delta) and last_delta.finish_reason == "length"
    texts = "".join(e.text for e in events if isinstance(e, Delta))
    assert texts == "".join(CHAIN)


@pytest.mark.parametrize(
    ("chain", "expected"),
    [("so Paris", "\n\n"), ("so Paris\n", "\n"), ("step one\n\n", ""), ("a\n\n\n", "")],
)
def test_final_line_follows_a_blank_line(chain: str, expected: str) -> None:
    assert final_line(chain, " Paris.\nmore") == expected + "Final answer: Paris."


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        (" Paris.\nThe answer is Lyon.", "auto", "paris"),
        ("\n\n 42\n", "auto", "42"),
        (" \\boxed{7} because", "boxed", "7"),
        (" forty-two", "number", "forty-two"),
        ("  \n ", "auto", None),
    ],
)
def test_probe_answer_reads_the_first_line(text: str, mode: str, expected: str | None) -> None:
    assert probe_answer(text, mode) == expected


def test_registry_builds_the_convergence_policy() -> None:
    policy = registry.build(ConvergenceParams())
    assert isinstance(policy, ConvergencePolicy) and policy.name == "convergence"


@pytest.mark.parametrize(
    ("chain", "added", "stop", "expected"),
    [
        ("Step one.", "\n\nFinal answer: Paris", ["\n\n"], "Step one."),
        ("Step one.", "\n\nFinal answer: Paris", "Final", "Step one.\n\n"),
        ("Step one.\n", "\nFinal answer: Paris", ["\n\n"], "Step one."),  # spans the seam
        ("Step one.", "\n\nFinal answer: Paris", ["zzz"], "Step one.\n\nFinal answer: Paris"),
        ("Step one.", "\n\nFinal answer: Paris", None, "Step one.\n\nFinal answer: Paris"),
    ],
)
def test_the_added_answer_line_obeys_the_clients_stop(
    chain: str, added: str, stop: Any, expected: str
) -> None:
    assert stopped(chain, added, stop) == expected
