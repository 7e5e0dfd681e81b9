"""Load-aware adaptivity: spend less test-time compute while the workers are saturated.

``LoadSignal`` is the seam to the worker pool: ``saturation(tier)`` is 0 (idle) .. 1 (full:
queue building, KV cache nearly used), or ``None`` when unknown (a stale or missing signal
counts as unknown, never as idle or as full). When a tier is at or above
``load.saturated_at``, the router scales sample budgets by ``load.budget_scale``, probes at
``probe.rate * load.probe_rate_scale``, and turns off, for easy bands, the policies whose facts
say ``shed_under_load`` (speculation), and says so in the decision's reasons. No signal
(``NoLoadSignal``) means the router never sheds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from policies import registry
from policies.params import PolicyParams
from router.config import LoadConfig


class LoadSignal(Protocol):
    def saturation(self, tier: str) -> float | None: ...


class NoLoadSignal:
    def saturation(self, tier: str) -> float | None:
        return None


@dataclass(frozen=True)
class LoadState:
    tier: str
    saturation: float | None
    saturated: bool

    def reason(self) -> str:
        return f"load: tier {self.tier} saturation {self.saturation:.2f}"


def assess(signal: LoadSignal, tier: str, config: LoadConfig) -> LoadState:
    level = signal.saturation(tier)
    return LoadState(tier, level, level is not None and level >= config.saturated_at)


def shed(params: PolicyParams, plain: PolicyParams, reasons: list[str]) -> PolicyParams:
    """An easy request under load skips a policy whose facts say so (speculation costs judge
    calls on the large tier): ``plain`` instead."""
    if not registry.facts(params.name).shed_under_load:
        return params
    reasons.append(f"load: easy band, {params.name} off ({params.name} -> {plain.name})")
    return plain
