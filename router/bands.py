"""Difficulty bands: ordered ranges of difficulty, each naming a tier, a policy and its params.

``build_bands`` merges each band's ``params`` over the ``policies.<policy>`` defaults once, at
startup; ``select`` picks the band a (shifted) difficulty falls in. What a band's params may
become afterwards (budget scaling, a request's overrides, caps) is ``policies.overrides``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from policies.config import PoliciesConfig
from policies.params import PolicyParams, with_updates
from router.config import BandConfig


@dataclass(frozen=True)
class Band:
    name: str
    lower: float
    upper: float  # exclusive; math.inf on the last band
    tier: str | None
    params: PolicyParams
    thinking_budget: int | None = None  # on a reasoning tier; None: the profile decides

    def describe(self) -> str:
        upper = "inf" if math.isinf(self.upper) else f"{self.upper:g}"
        return f"{self.name} [{self.lower:g}, {upper})"


def build_bands(configs: tuple[BandConfig, ...], policies: PoliciesConfig) -> tuple[Band, ...]:
    bands: list[Band] = []
    lower = -math.inf
    for config in configs:
        base = policies.named(config.policy)
        params = with_updates(base, config.params)
        upper = math.inf if config.upto is None else config.upto
        bands.append(
            Band(config.name, max(lower, 0.0), upper, config.tier, params, config.thinking_budget)
        )
        lower = upper
    return tuple(bands)


def select(bands: tuple[Band, ...], score: float) -> Band:
    """The first band whose upper bound is above ``score`` (the last band has none)."""
    for band in bands:
        if score < band.upper:
            return band
    return bands[-1]
