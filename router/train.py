"""Fit the ``learned`` predictor from trace records or labelled question sets (NumPy).

Examples come from two kinds of JSONL file:
- trace records (``router.traces``): the n-grams come from ``prompt`` when the trace kept it,
  else from the hashed ``ngrams``; the label is ``label`` when present, else answer agreement
  among at least two samples: ``agreement < agree_below`` means hard (1). Records with neither
  are skipped. This label needs no ground truth, which is what lets the gateway learn from its
  own traffic.
- question sets (``bench/data/*.jsonl``): ``question`` with a label given for the whole file.

``train`` holds out a stratified fraction, fits on the rest, reports AUC and Brier score on the
held-out part, then refits on everything for the model it returns.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.request import GenRequest
from router.features import Features, extract
from router.learned import DEFAULT_BUCKETS, LearnedModel, hashed_ngrams
from router.predictor import DEFAULT_WEIGHTS

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Example:
    ngrams: tuple[int, ...]
    features: dict[str, float]
    label: int


@dataclass(frozen=True)
class Quality:
    records: int
    positives: int
    auc: float | None  # None when the held-out part has a single class
    brier: float


@dataclass(frozen=True)
class TrainResult:
    model: LearnedModel
    train_records: int
    heldout: Quality


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not JSON: {exc}") from exc


def question_examples(path: Path, label: int, buckets: int = DEFAULT_BUCKETS) -> list[Example]:
    examples = []
    for record in _jsonl(path):
        req = GenRequest(messages=({"role": "user", "content": record["question"]},))
        examples.append(
            Example(
                tuple(hashed_ngrams(record["question"], buckets)), extract(req).as_dict(), label
            )
        )
    return examples


def trace_label(record: dict[str, Any], agree_below: float) -> int | None:
    if record.get("label") is not None:
        return int(record["label"])
    agreement, samples = record.get("agreement"), record.get("samples") or 0
    if agreement is None or samples < 2:
        return None
    return 1 if float(agreement) < agree_below else 0


def trace_examples(
    path: Path, buckets: int = DEFAULT_BUCKETS, agree_below: float = 0.75
) -> tuple[list[Example], int]:
    """Examples from a trace file, and how many records were skipped (no label or n-grams)."""
    examples, skipped = [], 0
    for record in _jsonl(path):
        if record.get("kind", "request") != "request":
            continue
        label = trace_label(record, agree_below)
        if record.get("prompt") is not None:
            ngrams: tuple[int, ...] | None = tuple(hashed_ngrams(record["prompt"], buckets))
        elif record.get("ngrams") is not None and record.get("ngram_buckets") == buckets:
            ngrams = tuple(int(i) for i in record["ngrams"] if 0 <= int(i) < buckets)
        else:
            ngrams = None
        if label is None or ngrams is None or not isinstance(record.get("features"), dict):
            skipped += 1
            continue
        examples.append(
            Example(ngrams, {k: float(v) for k, v in record["features"].items()}, label)
        )
    return examples, skipped


def split(
    examples: Sequence[Example], heldout: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Stratified: each label keeps its share in both parts."""
    rng = random.Random(seed)
    train: list[Example] = []
    test: list[Example] = []
    for label in (0, 1):
        group = [e for e in examples if e.label == label]
        rng.shuffle(group)
        cut = round(len(group) * heldout)
        test += group[:cut]
        train += group[cut:]
    return train, test


def _design(examples: Sequence[Example], buckets: int) -> tuple[Any, Any, Array, int]:
    """Sparse design matrix as (rows, cols, values): features first, then n-gram buckets."""
    names = Features.names()
    rows, cols, vals = [], [], []
    for r, example in enumerate(examples):
        for c, name in enumerate(names):
            rows.append(r)
            cols.append(c)
            vals.append(example.features.get(name, 0.0))
        for bucket in example.ngrams:
            rows.append(r)
            cols.append(len(names) + bucket)
            vals.append(1.0)
    return np.array(rows), np.array(cols), np.array(vals, dtype=np.float64), len(names) + buckets


def fit(
    examples: Sequence[Example],
    buckets: int = DEFAULT_BUCKETS,
    l2: float = 0.01,
    iterations: int = 2000,
    prior: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> LearnedModel:
    """L2-regularised logistic regression by Nesterov-accelerated gradient descent.

    Feature weights are pulled towards ``prior`` (the heuristic's weights) rather than towards
    zero, so a cue the training set never shows (code, say) keeps its hand-set weight instead
    of being forgotten; n-gram weights are pulled towards zero.
    """
    if not examples or len({e.label for e in examples}) < 2:
        raise ValueError("training needs examples of both labels (easy 0 and hard 1)")
    rows, cols, vals, dim = _design(examples, buckets)
    n = len(examples)
    y = np.array([e.label for e in examples], dtype=np.float64)
    centre = np.zeros(dim)
    centre[: len(Features.names())] = [prior.get(name, 0.0) for name in Features.names()]
    # Step 1/L, L bounding the loss's curvature: 0.25 * mean squared row norm (+1: the bias).
    lipschitz = 0.25 * (float(np.sum(vals**2)) / n + 1.0) + l2
    params = np.append(centre, 0.0)
    momentum = params.copy()
    for t in range(iterations):
        look = momentum
        w, b = look[:dim], look[dim]
        z = np.bincount(rows, weights=vals * w[cols], minlength=n) + b
        r = (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))) - y) / n
        grad = np.empty(dim + 1)
        grad[:dim] = np.bincount(cols, weights=vals * r[rows], minlength=dim) + l2 * (w - centre)
        grad[dim] = r.sum()
        updated = look - grad / lipschitz
        momentum = updated + (t / (t + 3)) * (updated - params)
        params = updated
    return _model(params, buckets, n)


def _model(params: Array, buckets: int, records: int) -> LearnedModel:
    names = Features.names()
    ngram = params[len(names) : len(names) + buckets]
    return LearnedModel(
        buckets=buckets,
        bias=round(float(params[-1]), 6),
        feature_weights={n: round(float(w), 6) for n, w in zip(names, params, strict=False)},
        ngram_weights={
            int(i): round(float(ngram[i]), 6) for i in np.flatnonzero(np.abs(ngram) > 1e-6)
        },
        meta={"records": records},
    )


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Probability a random hard example scores above a random easy one (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def evaluate(model: LearnedModel, examples: Sequence[Example]) -> Quality:
    scores = [model.score(list(e.ngrams), e.features) for e in examples]
    labels = [e.label for e in examples]
    brier = sum((s - y) ** 2 for s, y in zip(scores, labels, strict=True)) / max(len(labels), 1)
    return Quality(len(labels), sum(labels), auc(scores, labels), brier)


def train(
    examples: Sequence[Example],
    *,
    buckets: int = DEFAULT_BUCKETS,
    heldout: float = 0.2,
    seed: int = 0,
    l2: float = 0.01,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    part, test = split(examples, heldout, seed)
    quality = evaluate(fit(part, buckets, l2), test)
    final = fit(examples, buckets, l2)
    info = {
        **final.meta,
        **(meta or {}),
        "heldout": {"records": quality.records, "auc": quality.auc, "brier": quality.brier},
        "l2": l2,
    }
    model = LearnedModel(
        final.buckets, final.bias, final.feature_weights, final.ngram_weights, info
    )
    return TrainResult(model=model, train_records=len(part), heldout=quality)
