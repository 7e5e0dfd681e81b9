"""Unit tests for bench.eval: settings, subsets, concurrency and resuming an interrupted run."""

import asyncio
import json
from pathlib import Path

import pytest

from bench.eval import (
    Outcome,
    PartialStore,
    Record,
    Setting,
    evaluate,
    parse_setting,
    rescore,
    spread,
)
from bench.report import summarise
from bench.scoring import Question

QUESTIONS = [Question(f"q{i}", f"question {i}?", "paris") for i in range(5)]
META = {"data": "set.jsonl", "max_tokens": 48}


class FakeGateway:
    """Answers "Paris" except for ids in ``fail`` (raises) or ``wrong`` (answers "Lyon")."""

    def __init__(self, fail: set[str] | None = None, wrong: set[str] | None = None) -> None:
        self.fail = fail or set()
        self.wrong = wrong or set()
        self.asked: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, setting: Setting, question: Question) -> Outcome:
        self.asked.append((setting.name, question.id))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        if question.id in self.fail:
            raise ConnectionError("gateway went away")
        reply = "Lyon" if question.id in self.wrong else "It is Paris."
        samples = 4 if setting.name == "bon4" else 1
        return Outcome(reply, completion_tokens=10 * samples, prompt_tokens=20, samples=samples)


def settings(*names: str) -> list[Setting]:
    return [parse_setting(n, tier="small") for n in names]


def test_parse_setting_builds_the_documented_requests() -> None:
    assert parse_setting("single", tier="small") == Setting("single", "small", {"policy": "single"})
    bon = parse_setting("bon8", tier="small")
    assert bon.ttc == {
        "policy": "adaptive_bon",
        "min_samples": 8,
        "max_samples": 8,
        "single_sample_confidence": None,
    }
    assert parse_setting("adaptive90", tier="small").ttc == {
        "policy": "adaptive_bon",
        "confidence": 0.9,
    }
    assert parse_setting("adaptive", tier="small").ttc == {"policy": "adaptive_bon"}
    assert parse_setting("auto", tier="small", auto_model="auto") == Setting("auto", "auto", None)
    greedy = parse_setting("greedy", tier="small")
    assert (greedy.ttc, greedy.temperature) == ({"policy": "single"}, 0.0)
    for bad in ("bon0", "best8", "adaptive9", ""):
        with pytest.raises(ValueError):
            parse_setting(bad, tier="small")


def test_setting_overrides_extend_the_base_controls_and_name_the_results() -> None:
    tuned = parse_setting("adaptive:max_samples=16:confidence=0.95:stopping=window", tier="s")
    assert tuned.name == "adaptive:max_samples=16:confidence=0.95:stopping=window"
    assert tuned.ttc == {
        "policy": "adaptive_bon",
        "max_samples": 16,
        "confidence": 0.95,
        "stopping": "window",
    }
    gate_off = parse_setting("adaptive:single_sample_confidence=null", tier="s")
    assert gate_off.ttc == {"policy": "adaptive_bon", "single_sample_confidence": None}
    assert (parse_setting("bon4:weighted=true", tier="s").ttc or {})["weighted"] is True
    for bad in ("auto:max_samples=4", "adaptive:max_samples", "adaptive:=3", "nope:a=1"):
        with pytest.raises(ValueError):
            parse_setting(bad, tier="s")


def test_spread_takes_evenly_spaced_questions() -> None:
    many = [Question(f"q{i}", "?", "a") for i in range(60)]
    assert [q.id for q in spread(many, 4)] == ["q0", "q15", "q30", "q45"]
    assert spread(many, None) == many
    assert spread(many, 100) == many


async def test_run_never_exceeds_concurrency(tmp_path: Path) -> None:
    gateway = FakeGateway()
    store = PartialStore(tmp_path / "run.partial.jsonl", META)
    records = await evaluate(gateway, settings("single", "bon4"), QUESTIONS, store, concurrency=3)
    assert len(records) == 10
    assert gateway.max_in_flight == 3


async def test_resume_asks_only_missing_and_failed_pairs(tmp_path: Path) -> None:
    path = tmp_path / "run.partial.jsonl"
    chosen = settings("single", "bon4")
    first = FakeGateway(fail={"q2"})
    records = await evaluate(first, chosen, QUESTIONS, PartialStore(path, META), concurrency=2)
    assert records[("single", "q2")].error == "ConnectionError: gateway went away"

    second = FakeGateway()
    resumed: list[int] = []
    records = await evaluate(
        second, chosen, QUESTIONS, PartialStore(path, META), 2, on_resume=resumed.append
    )
    assert sorted(second.asked) == [("bon4", "q2"), ("single", "q2")]
    assert resumed == [8]
    assert all(r.error is None and r.correct for r in records.values())
    assert len(records) == 10


async def test_resume_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "run.partial.jsonl"
    store = PartialStore(path, META)
    await evaluate(FakeGateway(), settings("single"), QUESTIONS[:3], store, concurrency=1)
    with path.open("a") as handle:
        handle.write('{"setting": "single", "id": "q3", "corr')  # killed mid-write
    gateway = FakeGateway()
    records = await evaluate(gateway, settings("single"), QUESTIONS, store, concurrency=1)
    assert sorted(gateway.asked) == [("single", "q3"), ("single", "q4")]
    assert len(records) == 5
    assert len(store.load()) == 5  # records appended after the torn line are intact


async def test_resume_refuses_records_of_another_run(tmp_path: Path) -> None:
    path = tmp_path / "run.partial.jsonl"
    await evaluate(FakeGateway(), settings("single"), QUESTIONS, PartialStore(path, META), 1)
    other = PartialStore(path, {**META, "max_tokens": 64})
    with pytest.raises(ValueError, match="max_tokens"):
        await evaluate(FakeGateway(), settings("single"), QUESTIONS, other, 1)
    header = json.loads(path.read_text().splitlines()[0])
    assert header == {"meta": META}


async def test_adding_a_setting_keeps_the_answered_ones(tmp_path: Path) -> None:
    path = tmp_path / "run.partial.jsonl"
    await evaluate(FakeGateway(), settings("single"), QUESTIONS, PartialStore(path, META), 2)
    gateway = FakeGateway()
    await evaluate(gateway, settings("single", "bon4"), QUESTIONS, PartialStore(path, META), 2)
    assert {name for name, _ in gateway.asked} == {"bon4"}


async def test_summary_counts_tokens_per_correct_answer(tmp_path: Path) -> None:
    gateway = FakeGateway(fail={"q0"}, wrong={"q1"})
    chosen = settings("bon4")
    store = PartialStore(tmp_path / "run.partial.jsonl", META)
    records = await evaluate(gateway, chosen, QUESTIONS, store, concurrency=2)
    summary = summarise(chosen[0], list(records.values()))
    assert (summary["answered"], summary["errors"], summary["correct"]) == (4, 1, 3)
    assert summary["accuracy"] == 0.75
    assert summary["completion_tokens_per_question"] == 40
    assert summary["samples_per_question"] == 4
    assert summary["cost_of_pass"] == pytest.approx(160 / 3, abs=0.01)


def test_rescore_judges_stored_replies_with_the_current_scorer() -> None:
    stale = {
        ("single", "q0"): Record("single", "q0", correct=False, reply="Paris!"),
        ("single", "q1"): Record("single", "q1", correct=True, reply="Lyon"),
        ("single", "q2"): Record("single", "q2", error="TimeoutError: slow"),
    }
    fresh = rescore(stale, QUESTIONS)
    assert [fresh[("single", q)].correct for q in ("q0", "q1", "q2")] == [True, False, False]
    assert fresh[("single", "q2")].error == "TimeoutError: slow"


def test_summary_without_correct_answers_has_no_cost_of_pass() -> None:
    records = [Record("single", "q0", correct=False, completion_tokens=9, samples=1)]
    summary = summarise(parse_setting("single", tier="small"), records)
    assert summary["accuracy"] == 0.0
    assert summary["cost_of_pass"] is None


def test_summary_splits_thinking_from_answer_tokens() -> None:
    records = [
        Record("c", "q0", correct=True, completion_tokens=100, reasoning_tokens=80, samples=1),
        Record("c", "q1", correct=False, completion_tokens=50, reasoning_tokens=30, samples=1),
        Record("c", "q2", error="TimeoutError: slow", completion_tokens=999, reasoning_tokens=999),
    ]
    summary = summarise(parse_setting("convergence", tier="thinking"), records)
    assert summary["completion_tokens_per_question"] == 75
    assert summary["thinking_tokens_per_question"] == 55
    assert summary["answer_tokens_per_question"] == 20
