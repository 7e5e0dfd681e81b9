"""``learned``: logistic regression over hashed word n-grams plus the request features.

Scoring is pure Python (a sparse dot product over a few dozen hashed n-grams), so serving needs
no NumPy; ``router.train`` fits the weights. The model is a JSON file
(``FORMAT``): bias, one weight per feature, and the non-zero weights of the hashed n-gram
buckets. The predictor re-reads the file when its modification time changes (checked at most
every ``reload_interval_s``), so ``ttc router train --out`` on the served path hot-reloads it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.request import GenRequest
from router.features import Features, prompt_text
from router.heuristic import sigmoid
from router.predictor import LearnedConfig

log = logging.getLogger("ttc.router")

FORMAT = "ttc-router-logreg/1"
DEFAULT_MODEL = Path(__file__).parent / "data" / "default_model.json"
# 4096 buckets: a few collisions among the few thousand n-grams of short prompts cost less than
# the larger model file and slower training 2**16 would bring.
DEFAULT_BUCKETS = 4096

_TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")
_DIGITS = re.compile(r"\d+")


def tokens(text: str) -> list[str]:
    """Lower-cased words, numbers collapsed to "0" (the value rarely matters), punctuation."""
    return _TOKEN.findall(_DIGITS.sub("0", text.lower()))


def hashed_ngrams(text: str, buckets: int) -> list[int]:
    """Sorted, distinct bucket ids of the text's word unigrams and bigrams (crc32: stable)."""
    words = tokens(text)
    grams = [f"u:{w}" for w in words] + [
        f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False)
    ]
    # surrogatepass: the same bytes as UTF-8 for any valid text, and no error for a lone
    # surrogate should one get this far (the server refuses them with a 400).
    return sorted({zlib.crc32(g.encode("utf-8", "surrogatepass")) % buckets for g in grams})


@dataclass(frozen=True)
class LearnedModel:
    buckets: int
    bias: float
    feature_weights: Mapping[str, float]
    ngram_weights: Mapping[int, float]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def score(self, ngrams: list[int], features: Mapping[str, float]) -> float:
        z = self.bias
        z += sum(w * features.get(name, 0.0) for name, w in self.feature_weights.items())
        z += sum(self.ngram_weights.get(i, 0.0) for i in ngrams)
        return sigmoid(z)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "buckets": self.buckets,
            "bias": self.bias,
            "feature_weights": dict(self.feature_weights),
            "ngram_weights": {str(i): w for i, w in sorted(self.ngram_weights.items())},
            "meta": dict(self.meta),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LearnedModel:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} model (format={data.get('format')!r})")
        return cls(
            buckets=int(data["buckets"]),
            bias=float(data["bias"]),
            feature_weights={str(k): float(v) for k, v in data["feature_weights"].items()},
            ngram_weights={int(k): float(v) for k, v in data["ngram_weights"].items()},
            meta=dict(data.get("meta") or {}),
        )


def load_model(path: Path) -> LearnedModel:
    """Read a model file; ``ValueError`` names the file on any problem."""
    try:
        return LearnedModel.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot load router model {path}: {exc}") from exc


def save_model(model: LearnedModel, path: Path) -> None:
    """Write atomically (temp file + rename) so a serving gateway never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(model.to_json(), indent=1) + "\n")
    os.replace(tmp, path)


class LearnedPredictor:
    name = "learned"

    def __init__(self, config: LearnedConfig, clock: Any = time.monotonic) -> None:
        self._path = Path(config.model) if config.model else DEFAULT_MODEL
        self._interval = config.reload_interval_s
        self._clock = clock
        self.model = load_model(self._path)
        self._mtime = self._path.stat().st_mtime_ns
        self._checked = clock()

    def score(self, req: GenRequest, features: Features) -> float:
        self._maybe_reload()
        ngrams = hashed_ngrams(prompt_text(req), self.model.buckets)
        return self.model.score(ngrams, features.as_dict())

    def _maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked < self._interval:
            return
        self._checked = now
        try:
            mtime = self._path.stat().st_mtime_ns
            if mtime != self._mtime:
                self.model, self._mtime = load_model(self._path), mtime
                log.info("router model reloaded from %s", self._path)
        except (OSError, ValueError) as exc:
            log.warning("router model not reloaded, keeping the previous one: %s", exc)
