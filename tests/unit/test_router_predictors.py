"""The cheap predictors: heuristic weights, the learned model file and its hot reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.request import GenRequest
from router import predictor
from router.features import extract
from router.learned import (
    DEFAULT_MODEL,
    LearnedModel,
    LearnedPredictor,
    hashed_ngrams,
    load_model,
    save_model,
)
from router.predictor import HeuristicConfig, LearnedConfig

# Written for these tests; none of them is in bench/data.
EASY = [
    "What is the capital of Spain?",
    "Who wrote Romeo and Juliet? Answer with just the name.",
    "What colour is the sky on a clear day? Answer with one word.",
]
HARD = [
    "A baker makes 4 trays of 12 rolls and sells 30 of them. How many rolls are left? "
    "Answer with just the number.",
    "Lisa is older than Ben, and Ben is older than Kim. Who is the youngest? Answer with one word.",
    "A tank holds 200 litres. It leaks 15 litres an hour for 6 hours, then is topped up "
    "with 40 litres. How many litres are in it now?",
]


def user(text: str) -> GenRequest:
    return GenRequest(messages=({"role": "user", "content": text},))


def score(p: predictor.DifficultyPredictor, text: str) -> float:
    r = user(text)
    return p.score(r, extract(r))


@pytest.mark.parametrize("config", [HeuristicConfig(), LearnedConfig()])
def test_predictors_rank_unseen_word_problems_above_simple_facts(
    config: HeuristicConfig | LearnedConfig,
) -> None:
    p = predictor.build(config)
    easy = [score(p, t) for t in EASY]
    hard = [score(p, t) for t in HARD]
    assert all(0.0 <= s <= 1.0 for s in easy + hard)
    assert max(easy) < min(hard[0], hard[2])  # the two arithmetic problems
    assert sum(hard) / len(hard) > sum(easy) / len(easy) + 0.3


def test_heuristic_weights_come_from_config() -> None:
    flat = predictor.build(HeuristicConfig(bias=0.0, weights={}))
    assert score(flat, HARD[0]) == pytest.approx(0.5)
    numbers_only = predictor.build(HeuristicConfig(bias=0.0, weights={"numbers": 4.0}))
    assert score(numbers_only, HARD[0]) > 0.8 and score(numbers_only, EASY[0]) == 0.5
    with pytest.raises(ValueError, match="unknown features"):
        HeuristicConfig(weights={"vibes": 1.0})


def test_the_bundled_model_says_what_it_was_trained_on() -> None:
    meta = load_model(DEFAULT_MODEL).meta
    assert meta["sources"] == ["facts-dev.jsonl=0", "hard-dev.jsonl=1"]
    assert "facts-test" not in json.dumps(meta)  # held out: never trained on


def test_ngram_hashing_is_stable_and_ignores_number_values() -> None:
    assert hashed_ngrams("I have 3 apples", 4096) == hashed_ngrams("I have 71 apples", 4096)
    assert hashed_ngrams("abc def", 4096) == hashed_ngrams("ABC  def", 4096)
    assert all(0 <= i < 64 for i in hashed_ngrams(HARD[2], 64))


def model(bias: float) -> LearnedModel:
    return LearnedModel(buckets=64, bias=bias, feature_weights={}, ngram_weights={})


def test_learned_predictor_hot_reloads_its_file(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    save_model(model(-2.0), path)
    now = [0.0]
    p = LearnedPredictor(LearnedConfig(model=str(path), reload_interval_s=5), clock=lambda: now[0])
    before = score(p, EASY[0])
    save_model(model(2.0), path)
    assert score(p, EASY[0]) == before  # not re-checked within the interval
    now[0] = 6.0
    assert score(p, EASY[0]) > 0.8
    path.write_text("{not json")
    now[0] = 12.0
    assert score(p, EASY[0]) > 0.8  # a broken file keeps the previous model


def test_a_missing_or_foreign_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load router model"):
        LearnedPredictor(LearnedConfig(model=str(tmp_path / "nope.json")))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "sklearn-pickle"}))
    with pytest.raises(ValueError, match="not a ttc-router-logreg/1 model"):
        load_model(other)
