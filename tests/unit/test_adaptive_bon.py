"""Unit tests for the adaptive_bon policy against the scripted Backend fake."""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from core.backend import Completion, Delta
from core.request import Decision, GenRequest
from core.result import PolicyResult
from policies import registry
from policies.adaptive_bon import AdaptiveBonParams, AdaptiveBonPolicy
from policies.voting import NO_ANSWER
from tests.fakes import Responder, ScriptedBackend, choice

TIER = "small"
LONG_A = "We could spend a long while describing the weather in many different ways today"
LONG_B = "Nobody here agrees on anything at all, which makes for a rather long discussion"


@dataclass
class ProbedBackend(ScriptedBackend):
    """A ScriptedBackend whose samples carry a mean log-probability per text (default -0.1)."""

    logprobs: dict[str, float] = field(default_factory=dict)
    affinities: list[str | None] = field(default_factory=list)

    async def chat(
        self, tier: str, body: dict[str, Any], *, affinity: str | None = None
    ) -> Completion:
        self.affinities.append(affinity)
        plain = await super().chat(tier, body, affinity=affinity)
        choices = tuple(
            choice(c.index, c.text, self.logprobs.get(c.text, -0.1)) for c in plain.choices
        )
        return replace(plain, choices=choices)


def in_order(*texts: str) -> Responder:
    """Answer each call with the next ``n`` texts, cycling through ``texts``."""
    stream = itertools.cycle(texts)
    return lambda _tier, body: [next(stream) for _ in range(body["n"])]


def request(**sampling: Any) -> GenRequest:
    messages = ({"role": "user", "content": "What is the capital of France?"},)
    return GenRequest(messages=messages, sampling=sampling, request_id="chatcmpl-test")


# The anchors of Adaptive-Consistency (gate off, up to 16 samples, Beta rule at 0.95): most
# tests exercise the rounds and stopping rules on these; the shipped defaults are tested apart.
CLASSIC: dict[str, Any] = {"single_sample_confidence": None, "max_samples": 16, "confidence": 0.95}


async def run(
    backend: ScriptedBackend,
    req: GenRequest | None = None,
    difficulty: float | None = None,
    **params: Any,
) -> PolicyResult:
    spec = AdaptiveBonParams(**{**CLASSIC, **params})
    decision = Decision(tier=TIER, params=spec, difficulty=difficulty)
    return await AdaptiveBonPolicy(spec).run(req or request(), decision, backend)


def round_sizes(backend: ScriptedBackend) -> list[int]:
    return [body["n"] for _, body in backend.calls]


async def test_stops_after_min_samples_when_answers_agree() -> None:
    backend = ScriptedBackend(in_order("Paris"))
    result = await run(backend, confidence=0.85)  # 2 agreeing votes: P = 0.875
    assert round_sizes(backend) == [2]
    assert result.message == "Paris"
    report = result.report
    assert (report["samples"], report["rounds"], report["stop_reason"]) == (2, 1, "confident")
    assert report["early_stopped"] is True
    assert report["votes"] == {"paris": 2}
    assert report["confidence"] == pytest.approx(0.875)


async def test_default_confidence_needs_four_agreeing_samples() -> None:
    backend = ScriptedBackend(in_order("Paris"))
    result = await run(backend)  # P(2, 0) = 0.875 < 0.95 <= P(4, 0) = 0.96875
    assert round_sizes(backend) == [2, 2]
    assert result.report["stop_reason"] == "confident"
    assert result.report["confidence"] == pytest.approx(0.9688, abs=1e-4)
    # 4 samples of 1 completion token each, against a budget of 16
    assert result.report["tokens_saved"] == 12


async def test_keeps_sampling_while_answers_disagree() -> None:
    backend = ScriptedBackend(in_order("Paris", "Lyon"))
    result = await run(backend, max_samples=6)
    assert round_sizes(backend) == [2, 2, 2]
    report = result.report
    assert (report["samples"], report["stop_reason"], report["early_stopped"]) == (
        6,
        "max_samples",
        False,
    )
    assert report["tokens_saved"] == 0
    assert report["votes"] == {"paris": 3, "lyon": 3}


async def test_never_exceeds_max_samples() -> None:
    backend = ScriptedBackend(in_order("1", "2", "3"))
    result = await run(backend, min_samples=2, step=2, max_samples=5)
    assert round_sizes(backend) == [2, 2, 1]
    assert result.report["samples"] == 5
    tiny = ScriptedBackend(in_order("1", "2"))
    result = await run(tiny, min_samples=3, max_samples=1)  # a request cut the budget to one
    assert round_sizes(tiny) == [1]
    assert result.report["stop_reason"] == "max_samples"


async def test_confidence_gate_accepts_a_confident_first_sample() -> None:
    backend = ProbedBackend(in_order("Paris"), logprobs={"Paris": -0.01})
    result = await run(backend, single_sample_confidence=0.9)
    assert round_sizes(backend) == [1]
    assert result.message == "Paris"
    report = result.report
    assert (report["samples"], report["stop_reason"]) == (1, "confident_first_sample")
    assert report["early_stopped"] is True
    assert report["first_sample_confidence"] == pytest.approx(math.exp(-0.01), abs=1e-4)
    assert report["tokens_saved"] == 15


async def test_confidence_gate_falls_back_to_voting_when_unsure() -> None:
    backend = ProbedBackend(in_order("Paris"), logprobs={"Paris": -1.0})
    result = await run(backend, single_sample_confidence=0.9, min_samples=3)
    # 1 gated sample, topped up to min_samples = 3 (P = 0.9375 < 0.95), then one step of 2
    assert round_sizes(backend) == [1, 2, 2]
    assert result.report["stop_reason"] == "confident"
    assert result.report["first_sample_confidence"] == pytest.approx(math.exp(-1.0), abs=1e-4)


async def test_gate_off_starts_with_min_samples() -> None:
    backend = ProbedBackend(in_order("Paris"), logprobs={"Paris": 0.0})
    result = await run(backend, min_samples=3)
    assert round_sizes(backend)[0] == 3
    assert "first_sample_confidence" not in result.report


async def test_window_rule_stops_once_the_last_answers_agree() -> None:
    backend = ScriptedBackend(in_order("Lyon", "Paris", "Paris", "Paris", "Nice"))
    result = await run(backend, stopping="window", window=3, min_samples=1, step=1)
    assert round_sizes(backend) == [1, 1, 1, 1]
    assert result.report["stop_reason"] == "window"
    assert result.message == "Paris"
    assert result.report["confidence"] == pytest.approx(0.8125)  # Beta P(3, 1), reported only


async def test_fixed_best_of_n_draws_every_sample_in_one_round() -> None:
    backend = ScriptedBackend(in_order("Lyon", "Paris", "Paris", "Lyon", "Paris"))
    result = await run(backend, min_samples=5, max_samples=5)
    assert round_sizes(backend) == [5]
    assert result.message == "Paris"
    report = result.report
    assert (report["stop_reason"], report["early_stopped"]) == ("max_samples", False)
    assert report["votes"] == {"paris": 3, "lyon": 2}
    agreeing = ScriptedBackend(in_order("Paris"))
    result = await run(agreeing, min_samples=8, max_samples=8)
    assert round_sizes(agreeing) == [8]  # agreement does not cut a fixed budget short
    assert result.report["early_stopped"] is False


async def test_decided_when_the_runner_up_cannot_catch_up() -> None:
    backend = ScriptedBackend(in_order("Paris"))
    # Beta at 0.995 needs 7 agreeing votes, but after 4 of 6 the last 2 cannot change the winner
    result = await run(backend, confidence=0.99, difficulty=1.0, max_samples=6)
    assert round_sizes(backend) == [2, 2]
    assert result.report["required_confidence"] == pytest.approx(0.995)
    assert (result.report["stop_reason"], result.report["early_stopped"]) == ("decided", True)


async def test_tie_goes_to_the_more_probable_answer_and_its_best_sample() -> None:
    texts = {"Answer: Lyon": -0.4, "Paris": -1.2, "The answer is Lyon.": -0.2, "Paris.": -0.9}
    backend = ProbedBackend(in_order(*texts), logprobs=texts)
    result = await run(backend, min_samples=4, max_samples=4)
    assert result.report["votes"] == {"lyon": 2, "paris": 2}
    assert result.report["answer"] == "lyon"
    assert result.message == "The answer is Lyon."
    assert result.report["confidence"] == pytest.approx(0.5)


async def test_difficulty_moves_the_required_confidence() -> None:
    easy = ScriptedBackend(in_order("Paris"))
    result = await run(easy, difficulty=0.0)  # 0.95 loosened to 0.725: 2 votes (0.875) suffice
    assert round_sizes(easy) == [2]
    assert result.report["required_confidence"] == pytest.approx(0.725)
    hard = ScriptedBackend(in_order("Paris"))
    result = await run(hard, difficulty=1.0)  # tightened to 0.975: 4 votes (0.969) do not
    assert round_sizes(hard) == [2, 2, 2]
    assert result.report["required_confidence"] == pytest.approx(0.975)


async def test_votes_count_by_meaning_with_the_prompts_options() -> None:
    """Issue 24's example: once {'(a) lyon': 2, 'b) paris': 1, '(b) paris': 1, 'b': 1}."""
    texts = ["(B) Paris", "The answer is B.", "B) Paris is the capital", "(A) Lyon", "(A) Lyon"]
    question = "Which city is the capital of France? (A) Lyon (B) Paris"
    req = GenRequest(messages=({"role": "user", "content": question},), request_id="chatcmpl-x")
    result = await run(ScriptedBackend(in_order(*texts)), req, min_samples=5, max_samples=5)
    assert result.report["votes"] == {"b": 3, "a": 2}
    assert result.report["answer"] == "b"
    assert result.message in texts[:3]


async def test_samples_without_an_answer_are_counted_and_weigh_against_the_leader() -> None:
    backend = ScriptedBackend(in_order("Paris", LONG_A, "Paris", LONG_B))
    result = await run(backend, min_samples=4, max_samples=4)
    report = result.report
    assert report["votes"] == {"paris": 2, NO_ANSWER: 2}
    assert report["answer"] == "paris" and result.message == "Paris"
    assert report["confidence"] == pytest.approx(0.5)  # 2 for Paris against 2 with none


async def test_open_ended_samples_are_selected_by_text_not_voted() -> None:
    """No short answer in the first sample: the request is open, its samples are compared as
    texts (once they clustered by exact text and voted; issue 24, item 5)."""
    texts = [LONG_A, LONG_B, LONG_A.upper() + "!", LONG_B + " today"]
    backend = ProbedBackend(in_order(*texts), logprobs={LONG_A: -0.5, LONG_A.upper() + "!": -0.3})
    result = await run(backend, max_samples=8)
    assert round_sizes(backend) == [2, 2]  # the first two differ: drawn up to open_samples = 4
    report = result.report
    assert (report["stop_reason"], report["selection"]) == ("open_samples", "medoid")
    assert (report["answer"], report["votes"], report["shape"]) == (None, {}, "open")
    assert report["shape_reason"] == "the first sample states no short answer"
    assert result.message == LONG_A  # the most central text; its uppercase twin ties, later


async def test_when_nothing_agrees_the_most_probable_sample_wins() -> None:
    texts = {LONG_A: -0.8, LONG_B: -0.3, LONG_B + " indeed": -0.6}
    backend = ProbedBackend(in_order(*texts), logprobs=texts)
    result = await run(backend, min_samples=3, max_samples=3)
    assert result.message == LONG_B
    assert result.report["selection"] == "logprob"


async def test_usage_adds_every_round() -> None:
    backend = ScriptedBackend(in_order("It is Paris", "Lyon"))
    result = await run(backend, max_samples=6)
    assert len(backend.calls) == 3
    # 10 prompt tokens per call; completion tokens are words: 2 * (3 + 1) per round
    assert [(k, t, u.prompt_tokens, u.completion_tokens) for k, t, u in result.usage.items()] == [
        ("sample", TIER, 30, 12)
    ]


async def test_client_n_gets_the_top_distinct_answers() -> None:
    backend = ScriptedBackend(in_order("Lyon", "Paris", "Paris", "Nice", "Paris", "Lyon"))
    result = await run(backend, request(n=3), min_samples=6, max_samples=6)
    assert round_sizes(backend) == [6]  # n is the round size upstream, not the client's n
    assert [(c.index, c.text) for c in result.choices] == [(0, "Paris"), (1, "Lyon"), (2, "Nice")]
    agreeing = ScriptedBackend(in_order("Paris"))
    result = await run(agreeing, request(n=2), min_samples=3, max_samples=3)
    assert [c.text for c in result.choices] == ["Paris"]  # fewer distinct answers than n


async def test_upstream_body_temperature_logprobs_and_affinity() -> None:
    backend = ProbedBackend(in_order("Paris", "Lyon"))
    await run(backend, request(max_tokens=24), max_samples=4)
    assert [tier for tier, _ in backend.calls] == [TIER, TIER]
    assert backend.affinities == ["chatcmpl-test", "chatcmpl-test"]
    body = backend.calls[0][1]
    assert (body["temperature"], body["logprobs"], body["max_tokens"]) == (0.7, True, 24)
    assert "seed" not in body
    chosen = ScriptedBackend(in_order("Paris", "Lyon"))
    result = await run(chosen, request(temperature=0.3, seed=7), max_samples=4, temperature=1.2)
    assert [body["temperature"] for _, body in chosen.calls] == [0.3, 0.3]
    assert [body["seed"] for _, body in chosen.calls] == [7, 9]  # rounds must not repeat
    assert result.choices[0].logprobs is None  # the client did not ask for logprobs


@pytest.mark.parametrize("gate", [0.75, None])
async def test_a_client_temperature_of_zero_draws_the_one_greedy_sample(
    gate: float | None,
) -> None:
    """Every sample at temperature 0 is the same: one, never n > 1 (vLLM refuses it)."""
    backend = ScriptedBackend(in_order("Paris", "Lyon"))
    result = await run(
        backend,
        request(temperature=0.0),
        max_samples=8,
        min_samples=2,
        single_sample_confidence=gate,
    )
    assert [(body["n"], body["temperature"]) for _, body in backend.calls] == [(1, 0.0)]
    assert result.report["stop_reason"] == "greedy" and result.report["samples"] == 1


async def test_deadline_cancels_the_round_in_flight() -> None:
    backend = ScriptedBackend(in_order("Paris"), delay_s=5.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await run(backend)
    assert len(backend.calls) == 1


async def test_stream_emits_the_answer_then_the_result() -> None:
    spec = AdaptiveBonParams(**{**CLASSIC, "confidence": 0.85})
    policy = registry.build(spec)
    assert isinstance(policy, AdaptiveBonPolicy)
    backend = ScriptedBackend(in_order("Paris"))
    events = [e async for e in policy.stream(request(), Decision(TIER, spec), backend)]
    deltas = [e for e in events if isinstance(e, Delta)]
    assert "".join(d.text for d in deltas) == "Paris"
    assert deltas[-1].finish_reason == "stop"
    assert isinstance(events[-1], PolicyResult)
    assert events[-1].report["samples"] == 2


async def test_default_first_sample_is_greedy_and_confident_answers_alone() -> None:
    backend = ScriptedBackend(in_order("Paris"))
    spec = AdaptiveBonParams()
    decision = Decision(tier=TIER, params=spec)
    result = await AdaptiveBonPolicy(spec).run(request(), decision, backend)
    assert round_sizes(backend) == [1]
    assert backend.calls[0][1]["temperature"] == 0.0
    assert result.report["stop_reason"] == "confident_first_sample"


async def test_default_unsure_first_sample_is_followed_by_voting_at_temperature() -> None:
    backend = ScriptedBackend(in_order("Paris", "Rome", "Paris", "Paris", "Rome", "Paris"))
    spec = AdaptiveBonParams(single_sample_confidence=0.999)  # exp(-0.1) = 0.905 < gate
    decision = Decision(tier=TIER, params=spec)
    result = await AdaptiveBonPolicy(spec).run(request(), decision, backend)
    temperatures = [body["temperature"] for _, body in backend.calls]
    assert temperatures[0] == 0.0 and set(temperatures[1:]) == {0.7}
    assert result.report["samples"] <= spec.max_samples == 16
    assert result.report["answer"] == "paris"


async def test_client_temperature_sets_the_votes_but_the_gate_sample_stays_greedy() -> None:
    # A client's 0.7 once made the gate sample a random draw: less often right, less often
    # confident, so more votes (issue 11, defect 3; bench/results/temperature/).
    backend = ScriptedBackend(in_order("Paris", "Rome", "Paris", "Paris", "Rome", "Paris"))
    spec = AdaptiveBonParams(single_sample_confidence=0.999, temperature=1.0)  # gate unsure
    decision = Decision(tier=TIER, params=spec)
    await AdaptiveBonPolicy(spec).run(request(temperature=0.7), decision, backend)
    temperatures = [body["temperature"] for _, body in backend.calls]
    assert len(temperatures) > 1
    assert temperatures[0] == 0.0 and set(temperatures[1:]) == {0.7}
    ungated = ScriptedBackend(in_order("Paris"))
    plain = AdaptiveBonParams(single_sample_confidence=0.999, greedy_first=False)
    await AdaptiveBonPolicy(plain).run(request(temperature=0.7), Decision(TIER, plain), ungated)
    assert ungated.calls[0][1]["temperature"] == 0.7


async def test_no_consensus_stops_a_vote_whose_first_samples_all_differ() -> None:
    backend = ProbedBackend(in_order("1", "2", "3", "4"), logprobs={"3": -0.01})
    result = await run(backend, max_samples=16)
    assert round_sizes(backend) == [2, 2]  # four distinct answers: more would rarely agree
    report = result.report
    assert (report["stop_reason"], report["early_stopped"]) == ("no_consensus", True)
    assert report["votes"] == {"1": 1, "2": 1, "3": 1, "4": 1}
    assert (report["selection"], result.message, report["answer"]) == ("logprob", "3", "3")


async def test_no_consensus_answers_with_the_greedy_first_sample() -> None:
    backend = ScriptedBackend(in_order("Paris", "Lyon", "Rome", "Nice"))
    spec = AdaptiveBonParams(single_sample_confidence=0.999)  # the gate does not answer alone
    result = await AdaptiveBonPolicy(spec).run(request(), Decision(TIER, spec), backend)
    assert round_sizes(backend) == [1, 1, 2]
    assert backend.calls[0][1]["temperature"] == 0.0
    assert (result.report["stop_reason"], result.report["selection"]) == ("no_consensus", "greedy")
    assert result.message == "Paris" and result.report["answer"] == "paris"


async def test_no_consensus_when_most_samples_state_no_answer() -> None:
    backend = ScriptedBackend(in_order("Paris", "Paris", LONG_A, LONG_B, LONG_A, LONG_B))
    result = await run(backend, max_samples=16)
    # at 4, two for Paris against two with none is not "most"; at 6 it is (4 of 6)
    assert round_sizes(backend) == [2, 2, 2]
    assert result.report["stop_reason"] == "no_consensus"
    assert result.report["votes"] == {"paris": 2, NO_ANSWER: 4}


async def test_a_vote_with_a_pair_goes_on_and_the_rule_can_be_switched_off() -> None:
    backend = ScriptedBackend(in_order("Paris", "Lyon", "Paris", "Rome"))
    result = await run(backend, max_samples=6)
    assert result.report["stop_reason"] != "no_consensus" and len(backend.calls) == 3
    off = ScriptedBackend(in_order("1", "2", "3", "4"))
    result = await run(off, max_samples=6, no_consensus_after=None)
    assert round_sizes(off) == [2, 2, 2] and result.report["stop_reason"] == "max_samples"
    fixed = ScriptedBackend(in_order("1", "2", "3", "4"))
    await run(fixed, min_samples=6, max_samples=6)  # fixed best-of-N never stops early
    assert round_sizes(fixed) == [6]


async def test_near_identical_free_form_samples_stop_at_two() -> None:
    backend = ScriptedBackend(in_order(LONG_A, LONG_A.lower() + "."))
    result = await run(backend, max_samples=8)
    assert round_sizes(backend) == [2]
    report = result.report
    assert (report["stop_reason"], report["selection"]) == ("near_identical", "near_identical")
    assert report["similarity"] == 1.0 and result.message == LONG_A


async def test_a_gated_open_request_compares_its_greedy_sample_with_one_more() -> None:
    backend = ScriptedBackend(in_order(LONG_A, LONG_B, LONG_B, LONG_B))
    spec = AdaptiveBonParams()
    result = await AdaptiveBonPolicy(spec).run(request(), Decision(TIER, spec), backend)
    assert round_sizes(backend) == [1, 1, 2]  # greedy, one to compare, the rest of 4
    assert result.report["stop_reason"] == "open_samples"
    assert result.message == LONG_B  # three of four are LONG_B


async def test_a_long_first_sample_that_marks_no_answer_is_open() -> None:
    long_text = " ".join([LONG_A] * 5) + " and it is 42"
    backend = ScriptedBackend(in_order(long_text, LONG_B))
    result = await run(backend, max_samples=2, min_samples=1, step=1)
    assert result.report["shape"] == "open"
    assert result.report["shape_reason"].startswith("the first sample is long")
    marked = " ".join([LONG_A] * 5) + ". The answer is 42."
    closed = await run(ScriptedBackend(in_order(marked)), max_samples=2, min_samples=1, step=1)
    assert "shape" not in closed.report and closed.report["answer"] == "42"


async def test_pinned_medoid_selection_reads_no_answers() -> None:
    backend = ScriptedBackend(in_order("Paris", "Lyon", "Paris", "Rome"))
    result = await run(backend, selection="medoid", max_samples=8)
    assert round_sizes(backend) == [2, 2]
    report = result.report
    assert (report["selection"], report["votes"], report["answer"]) == ("medoid", {}, None)
    assert report["shape_reason"] == "selection: medoid"
    assert result.message == "Paris"


async def test_usc_asks_the_model_once_and_bills_the_call_as_judge() -> None:
    samples = in_order("Paris is big", "Lyon is old", "Rome", "Nice and sunny")

    def respond(tier: str, body: dict[str, Any]) -> list[str]:
        return ["3"] if body.get("continue_final_message") else samples(tier, body)

    backend = ScriptedBackend(respond)
    req = request(max_tokens=24)
    result = await run(backend, req, selection="usc", max_samples=8)
    judge = backend.calls[-1][1]
    assert len(backend.calls) == 3  # two rounds of samples, one judge call
    assert judge["messages"][: len(req.messages)] == [dict(m) for m in req.messages]
    assert "Response 4:\nNice and sunny" in judge["messages"][-2]["content"]
    assert (judge["max_tokens"], judge["temperature"]) == (1, 0)
    assert result.message == "Rome" and result.report["selection"] == "usc"
    kinds = {kind for kind, _, _ in result.usage.items()}
    assert kinds == {"sample", "judge"}


async def test_usc_falls_back_to_the_medoid_when_it_names_no_candidate() -> None:
    samples = in_order("Paris", "Lyon", "Paris", "Rome")

    def respond(tier: str, body: dict[str, Any]) -> list[str]:
        return ["maybe"] if body.get("continue_final_message") else samples(tier, body)

    result = await run(ScriptedBackend(respond), selection="usc", max_samples=8)
    assert result.report["selection"] == "medoid" and result.message == "Paris"
    assert result.report["selection_fallback"] == "usc named no candidate"


async def test_a_vote_whose_first_sample_is_open_uses_open_selection() -> None:
    samples = in_order(LONG_A, LONG_B, LONG_B + " again", LONG_A)

    def respond(tier: str, body: dict[str, Any]) -> list[str]:
        return ["2"] if body.get("continue_final_message") else samples(tier, body)

    result = await run(ScriptedBackend(respond), open_selection="usc", max_samples=8)
    assert result.report["selection"] == "usc" and result.message == LONG_B


async def test_shape_check_off_keeps_voting_whatever_the_first_sample() -> None:
    backend = ScriptedBackend(in_order(LONG_A, "Paris", "Paris", "Paris"))
    result = await run(backend, max_samples=8, shape_check=False)
    assert "shape" not in result.report and result.report["answer"] == "paris"


async def test_a_greedy_open_request_returns_its_one_sample() -> None:
    backend = ScriptedBackend(in_order(LONG_A))
    result = await run(backend, request(temperature=0.0), max_samples=8)
    report = result.report
    assert (report["stop_reason"], report["selection"], report["shape"]) == (
        "greedy",
        "first",
        "open",
    )
    assert result.message == LONG_A and "similarity" not in report
