"""The ``DifficultyPredictor`` seam, its config union and a lazy registry.

A predictor turns a request (and its precomputed ``Features``) into a calibrated difficulty in
[0, 1]: roughly the probability that one sample of the default tier is not enough. Predictors
here are cheap and synchronous; the probe (``router.probe``), which calls a model, is a
separate stage the router runs only when a cheap predictor is unsure.

A new predictor is one config model in ``PredictorConfig`` and one entry in ``_FACTORIES``.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.request import GenRequest
from router.features import Features


class DifficultyPredictor(Protocol):
    name: str

    def score(self, req: GenRequest, features: Features) -> float:
        """Difficulty in [0, 1]; 0 easy .. 1 hard."""
        ...


class _PredictorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Hand-set on bench/data/*-dev.jsonl: arithmetic, multi-step and long prompts are what the small
# model gets wrong; a short factual question with "answer with just ..." it mostly gets right.
DEFAULT_WEIGHTS: dict[str, float] = {
    "length": 1.5,
    "numbers": 2.0,
    "math": 2.0,
    "code": 1.5,
    "multi_step": 1.5,
    "short_answer": -0.5,
    "depth": 0.5,
    "max_tokens": 0.5,
}


class HeuristicConfig(_PredictorConfig):
    """A logistic function of weighted features; the weights are the whole model."""

    name: Literal["heuristic"] = "heuristic"
    bias: float = -2.5
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    @model_validator(mode="after")
    def _known_features(self) -> HeuristicConfig:
        unknown = set(self.weights) - set(Features.names())
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {Features.names()}")
        return self


class LearnedConfig(_PredictorConfig):
    """Logistic regression over hashed n-grams and features, loaded from a JSON model file."""

    name: Literal["learned"] = "learned"
    model: str | None = Field(None, description="model file; null: the bundled default")
    reload_interval_s: float = Field(5.0, gt=0.0, description="how often the file is re-checked")


PredictorConfig = Annotated[HeuristicConfig | LearnedConfig, Field(discriminator="name")]

_FACTORIES: dict[str, str] = {
    "heuristic": "router.heuristic:HeuristicPredictor",
    "learned": "router.learned:LearnedPredictor",
}


def available() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def build(config: HeuristicConfig | LearnedConfig) -> DifficultyPredictor:
    """The predictor ``config`` names; its module is imported on first use."""
    module_name, _, attr = _FACTORIES[config.name].partition(":")
    factory: Any = getattr(importlib.import_module(module_name), attr)
    predictor: DifficultyPredictor = factory(config)
    return predictor
