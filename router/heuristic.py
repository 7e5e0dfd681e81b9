"""``heuristic``: difficulty as a logistic function of weighted features (weights in config)."""

from __future__ import annotations

import math

from core.request import GenRequest
from router.features import Features
from router.predictor import HeuristicConfig


def sigmoid(z: float) -> float:
    """Logistic function, stable for large ``|z|``."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class HeuristicPredictor:
    name = "heuristic"

    def __init__(self, config: HeuristicConfig) -> None:
        self._bias = config.bias
        self._weights = dict(config.weights)

    def score(self, req: GenRequest, features: Features) -> float:
        values = features.as_dict()
        z = self._bias + sum(w * values[name] for name, w in self._weights.items())
        return sigmoid(z)
