"""Difficulty bands: ordered ranges of difficulty, each naming a tier, a policy and its params.

``build_bands`` merges each band's ``params`` over the ``policies.<policy>`` defaults once, at
startup; ``select`` picks the band a (shifted) difficulty falls in. ``scale_budget`` multiplies
a policy's compute budget (samples, steps, probes, chain length) by a factor, for
``reasoning_effort`` and for load shedding, never above the configured caps when it grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from annotated_types import Ge, Le
from pydantic import BaseModel

from policies.params import (
    AdaptiveBonParams,
    PoliciesConfig,
    PolicyCaps,
    PolicyParams,
    with_updates,
)
from router.config import BandConfig

# Budget fields of every policy, and the cap (a PolicyCaps field) bounding each when it grows.
BUDGET_FIELDS: dict[str, str | None] = {
    "max_samples": "max_samples",
    "small_max_samples": "max_samples",
    "max_steps": "max_steps",
    "max_probes": "max_probes",
    "default_budget": None,  # convergence: the chain budget when the request sets no max_tokens
}


@dataclass(frozen=True)
class Band:
    name: str
    lower: float
    upper: float  # exclusive; math.inf on the last band
    tier: str | None
    params: PolicyParams

    def describe(self) -> str:
        upper = "inf" if math.isinf(self.upper) else f"{self.upper:g}"
        return f"{self.name} [{self.lower:g}, {upper})"


def build_bands(configs: tuple[BandConfig, ...], policies: PoliciesConfig) -> tuple[Band, ...]:
    bands: list[Band] = []
    lower = -math.inf
    for config in configs:
        base: PolicyParams = getattr(policies, config.policy)
        params = with_updates(base, config.params)
        upper = math.inf if config.upto is None else config.upto
        bands.append(Band(config.name, max(lower, 0.0), upper, config.tier, params))
        lower = upper
    return tuple(bands)


def select(bands: tuple[Band, ...], score: float) -> Band:
    """The first band whose upper bound is above ``score`` (the last band has none)."""
    for band in bands:
        if score < band.upper:
            return band
    return bands[-1]


def _field_bounds(model: BaseModel, name: str) -> tuple[float, float]:
    info = type(model).model_fields[name]
    low, high = -math.inf, math.inf
    for item in info.metadata:
        if isinstance(item, Ge):
            low = float(item.ge)  # type: ignore[arg-type]
        elif isinstance(item, Le):
            high = float(item.le)  # type: ignore[arg-type]
    return low, high


def scale_budget(params: PolicyParams, factor: float, caps: PolicyCaps) -> PolicyParams:
    """``params`` with every budget field multiplied by ``factor`` (rounded, at least 1).

    Growing never passes the cap (nor shrinks a configured value that already exceeds it);
    ``min_samples`` follows ``max_samples`` down so the pair stays consistent.
    """
    if factor == 1.0:
        return params
    update: dict[str, Any] = {}
    for name, cap_name in BUDGET_FIELDS.items():
        value = getattr(params, name, None)
        if value is None:
            continue
        low, high = _field_bounds(params, name)
        scaled = max(round(value * factor), 1, int(low))
        if factor > 1.0 and cap_name is not None:
            scaled = min(scaled, max(getattr(caps, cap_name), value))
        update[name] = int(min(scaled, high))
    if "max_samples" in update and isinstance(params, AdaptiveBonParams):
        update["min_samples"] = min(params.min_samples, update["max_samples"])
    return with_updates(params, update)
