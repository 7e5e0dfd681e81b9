"""``ttc router train``: examples from traces and question sets, fitting, held-out quality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from router.learned import load_model
from router.train import Example, auc, evaluate, fit, split, trace_examples, trace_label
from ttc.cli import app


def test_auc_counts_ranked_pairs() -> None:
    assert auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert auc([0.1, 0.9], [1, 0]) == 0.0
    assert auc([0.5, 0.5], [1, 0]) == 0.5
    assert auc([0.3], [1]) is None


@pytest.mark.parametrize(
    ("record", "label"),
    [
        ({"agreement": 0.5, "samples": 4}, 1),
        ({"agreement": 1.0, "samples": 4}, 0),
        ({"agreement": None, "samples": 1}, None),
        ({"agreement": 1.0, "samples": 4, "label": 1}, 1),
    ],
)
def test_agreement_labels_traces_without_ground_truth(
    record: dict[str, Any], label: int | None
) -> None:
    assert trace_label(record, agree_below=0.75) == label


def synthetic(n: int) -> list[Example]:
    """Hard examples carry n-gram 7 and many numbers; easy ones n-gram 3."""
    hard = [Example((7, 100 + i), {"numbers": 0.8}, 1) for i in range(n)]
    easy = [Example((3, 200 + i), {"numbers": 0.0}, 0) for i in range(n)]
    return hard + easy


def test_fit_learns_a_separable_set_and_split_is_stratified() -> None:
    train, test = split(synthetic(20), heldout=0.25, seed=1)
    assert sum(e.label for e in test) == 5 and len(test) == 10
    quality = evaluate(fit(train, buckets=512), test)
    assert quality.auc == 1.0 and quality.brier < 0.1
    with pytest.raises(ValueError, match="both labels"):
        fit([e for e in train if e.label == 1], buckets=512)


def trace(agreement: float, ngram: int, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "request",
        "features": {"numbers": 0.5},
        "samples": 4,
        "agreement": agreement,
        "ngram_buckets": 4096,
        "ngrams": [ngram, 4000 + int(agreement * 50)],
        **extra,
    }


def write_traces(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_trace_examples_skip_what_cannot_be_learned_from(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_traces(
        path,
        [
            trace(0.25, 11),
            trace(1.0, 12),
            trace(1.0, 13, samples=1),  # one sample: no agreement label
            {**trace(1.0, 14), "ngram_buckets": 64},  # another hashing space
            {"kind": "shadow", "agree": True},  # not a request
            {**trace(0.5, 15), "ngrams": None, "prompt": "How many apples?"},
        ],
    )
    examples, skipped = trace_examples(path)
    assert [e.label for e in examples] == [1, 0, 1] and skipped == 2
    assert examples[0].ngrams == (11, 4012)


def test_cli_trains_from_traces_and_prints_held_out_quality(tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    hard = [trace(0.25 + 0.01 * (i % 5), 7) for i in range(20)]
    easy = [trace(1.0, 3) for _ in range(20)]
    write_traces(traces, hard + easy)
    out = tmp_path / "model.json"
    result = CliRunner().invoke(
        app, ["router", "train", "--traces", str(traces), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "AUC" in result.output and "Brier" in result.output
    model = load_model(out)
    assert model.meta["heldout"]["auc"] == 1.0 and model.meta["records"] == 40


def test_cli_refuses_a_bad_label_and_missing_inputs(tmp_path: Path) -> None:
    runner = CliRunner()
    out = str(tmp_path / "m.json")
    bad = runner.invoke(app, ["router", "train", "--questions", "x.jsonl=2", "--out", out])
    assert bad.exit_code != 0 and "FILE=0" in bad.output
    none = runner.invoke(app, ["router", "train", "--out", out])
    assert none.exit_code != 0
