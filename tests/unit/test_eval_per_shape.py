"""Unit tests for the mixed eval's figures per answer shape over runs, its table and its plot."""

from pathlib import Path

import pytest
from rich.console import Console

from bench.eval import Record, parse_setting
from bench.mixed import Prompt
from bench.mixed_report import cell, mixed_plot, mixed_table
from bench.mixed_summary import build_mixed_results, run_figures, spread_of

PROMPTS = [
    Prompt("c1", "closed", "capital", "heldout", 48, answer="Paris"),
    Prompt("c2", "closed", "capital", "heldout", 48, answer="Rome"),
    Prompt("o1", "open", "poem", "heldout", 96),
    Prompt("m1", "many_valid", "name_one", "heldout", 32),
]
SETTINGS = [parse_setting(name, tier="small") for name in ("greedy", "bon8")]


def record(
    setting: str,
    item: str,
    *,
    correct: bool = False,
    tokens: int = 10,
    samples: int = 1,
    latency_s: float = 1.0,
    error: str | None = None,
) -> Record:
    return Record(
        setting,
        item,
        correct=correct,
        completion_tokens=tokens,
        samples=samples,
        latency_s=latency_s,
        error=error,
    )


def run_of(*records: Record) -> dict[tuple[str, str], Record]:
    return {r.key: r for r in records}


RUNS = [
    run_of(
        record("greedy", "c1", correct=True, samples=1, latency_s=1.0),
        record("greedy", "c2", correct=False, samples=1, latency_s=3.0),
        record("greedy", "o1", tokens=100, samples=1, latency_s=5.0),
        record("greedy", "m1", tokens=8, samples=1, latency_s=0.5),
        record("bon8", "c1", correct=True, tokens=80, samples=8, latency_s=4.0),
        record("bon8", "c2", correct=True, tokens=80, samples=8, latency_s=4.0),
        record("bon8", "o1", tokens=800, samples=8, latency_s=9.0),
        record("bon8", "m1", error="TimeoutError: slow", tokens=999, samples=9),
    ),
    run_of(
        record("greedy", "c1", correct=True, samples=1, latency_s=1.0),
        record("greedy", "c2", correct=True, samples=1, latency_s=1.0),
        record("greedy", "o1", tokens=120, samples=1, latency_s=6.0),
        record("greedy", "m1", tokens=12, samples=1, latency_s=0.5),
        record("bon8", "c1", correct=False, tokens=60, samples=6, latency_s=2.0),
        record("bon8", "c2", correct=True, tokens=100, samples=8, latency_s=6.0),
        record("bon8", "o1", tokens=880, samples=8, latency_s=9.0),
        record("bon8", "m1", tokens=64, samples=8, latency_s=2.0),
        record("other", "c1", correct=True, samples=1),  # a setting not asked for this time
    ),
]


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    return build_mixed_results({"split": "heldout"}, SETTINGS, RUNS, PROMPTS)


def shape(results: dict[str, object], setting: str, name: str) -> dict[str, object]:
    summaries = results["settings"]
    assert isinstance(summaries, list)
    (summary,) = [s for s in summaries if s["setting"] == setting]
    figures: dict[str, object] = summary["shapes"][name]
    return figures


def test_run_figures_count_answered_requests_only() -> None:
    records = [
        record("s", "a", correct=True, tokens=30, samples=3, latency_s=2.0),
        record("s", "b", correct=False, tokens=10, samples=1, latency_s=4.0),
        record("s", "c", error="boom", tokens=500, samples=16, latency_s=99.0),
    ]
    figures = run_figures(records, scored=True)
    assert figures == {
        "requests": 3,
        "errors": 1,
        "accuracy": 0.5,
        "completion_tokens_per_request": 20,
        "samples_per_request": 2,
        "samples_max": 3,
        "latency_p50_s": 3.0,
    }
    assert run_figures(records, scored=False)["accuracy"] is None
    empty = run_figures([record("s", "a", error="boom")], scored=True)
    assert (empty["accuracy"], empty["completion_tokens_per_request"], empty["samples_max"]) == (
        None,
        None,
        None,
    )


def test_spread_reports_mean_min_max_and_stdev() -> None:
    assert spread_of([0.5, 1.0, None]) == {"mean": 0.75, "min": 0.5, "max": 1.0, "stdev": 0.3536}
    assert spread_of([4.0]) == {"mean": 4.0, "min": 4.0, "max": 4.0, "stdev": 0.0}
    assert spread_of([None, None]) is None


def test_figures_are_per_shape_and_over_runs(results: dict[str, object]) -> None:
    closed = shape(results, "greedy", "closed")
    assert closed["prompts"] == 2
    assert closed["accuracy"] == {"mean": 0.75, "min": 0.5, "max": 1.0, "stdev": 0.3536}
    assert [r["accuracy"] for r in closed["runs"]] == [0.5, 1.0]  # type: ignore[attr-defined]
    opened = shape(results, "greedy", "open")
    assert opened["accuracy"] is None  # no single right answer: never scored
    assert opened["completion_tokens_per_request"] == {
        "mean": 110.0,
        "min": 100.0,
        "max": 120.0,
        "stdev": 14.1421,
    }
    bon_closed = shape(results, "bon8", "closed")
    assert bon_closed["samples_per_request"] == {
        "mean": 7.5,
        "min": 7.0,
        "max": 8.0,
        "stdev": 0.7071,
    }
    assert bon_closed["samples_max"] == {"mean": 8.0, "min": 8.0, "max": 8.0, "stdev": 0.0}
    assert bon_closed["latency_p50_s"] == {"mean": 4.0, "min": 4.0, "max": 4.0, "stdev": 0.0}


def test_errors_are_counted_per_run_and_left_out_of_the_figures(
    results: dict[str, object],
) -> None:
    many = shape(results, "bon8", "many_valid")
    assert [r["errors"] for r in many["runs"]] == [1, 0]  # type: ignore[attr-defined]
    assert many["completion_tokens_per_request"] == {
        "mean": 64.0,
        "min": 64.0,
        "max": 64.0,
        "stdev": 0.0,
    }


def test_tokens_are_compared_with_one_greedy_answer_per_shape(results: dict[str, object]) -> None:
    assert shape(results, "greedy", "open")["tokens_vs_greedy"] == 1.0
    assert shape(results, "bon8", "open")["tokens_vs_greedy"] == pytest.approx(840 / 110, abs=1e-3)
    assert shape(results, "bon8", "closed")["tokens_vs_greedy"] == 8.0
    alone = build_mixed_results({}, SETTINGS[1:], RUNS, PROMPTS)
    assert shape(alone, "bon8", "open")["tokens_vs_greedy"] is None


def test_results_keep_every_asked_record_with_its_run_and_shape(
    results: dict[str, object],
) -> None:
    records = results["records"]
    assert isinstance(records, list)
    assert len(records) == 16  # the unrequested setting's record is left out
    assert {(r["run"], r["shape"]) for r in records if r["id"] == "o1"} == {
        (1, "open"),
        (2, "open"),
    }
    assert {r["correct"] for r in records if r["shape"] != "closed"} == {None}  # not scored
    assert {r["correct"] for r in records if r["shape"] == "closed"} == {True, False}
    assert results["prompts"] == {"closed": 2, "open": 1, "many_valid": 1}
    assert results["meta"] == {"split": "heldout"}


def test_cells_show_the_spread_only_when_runs_differ() -> None:
    assert cell(None, ".1f") == "-"
    assert cell(8, ".0f") == "8"
    assert (
        cell({"mean": 0.75, "min": 0.5, "max": 1.0, "stdev": 0.35}, ".1%") == "75.0% [50.0%-100.0%]"
    )
    assert cell({"mean": 4.0, "min": 4.0, "max": 4.0, "stdev": 0.0}, ".2f") == "4.00"


def test_table_has_a_row_per_shape_and_setting(results: dict[str, object]) -> None:
    console = Console(record=True, width=200)
    console.print(mixed_table(results, "mixed"))
    text = console.export_text()
    rows = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]
    assert [(row[0], row[2]) for row in rows] == [
        (name, setting)
        for name in ("closed", "open", "many_valid")
        for setting in ("greedy", "bon8")
    ]
    closed_bon8 = rows[1]
    assert closed_bon8[3:6] == ["75.0% [50.0%-100.0%]", "80.0", "8.00"]
    assert rows[5][-1] == "1"  # many_valid, bon8: the timed-out request, over both runs


def test_plot_is_written(results: dict[str, object], tmp_path: Path) -> None:
    path = tmp_path / "plot.png"
    mixed_plot(results, path, "mixed")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
