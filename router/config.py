"""The ``router:`` section of the config: predictor, bands, effort, probe, budget, load, traces.

The defaults work with any set of tiers: a band without ``tier`` goes to the default tier, so
with one tier every band maps to it. ``config/default.yaml`` documents every key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from policies import registry
from policies.params import error_field
from policies.tiers import unknown_tiers
from router.predictor import HeuristicConfig, LearnedConfig, PredictorConfig
from router.tools import ToolsConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BandConfig(_Section):
    """Difficulty below ``upto`` (and at or above the previous band's) selects this band."""

    name: str = Field(min_length=1)
    upto: float | None = Field(None, gt=0.0, description="upper bound; null on the last band")
    tier: str | None = Field(None, description="null: the router's default tier")
    policy: str = "single"
    params: dict[str, Any] = Field(default_factory=dict, description="over policies.<policy>")
    thinking_budget: int | None = Field(
        None,
        ge=0,
        le=131072,
        description="thinking tokens on a reasoning tier (0: thinking off), scaled by "
        "reasoning_effort's budget_scale; null: the tier profile's budget for the effort",
    )

    @model_validator(mode="after")
    def _valid_policy(self) -> BandConfig:
        registry.params_model(self.policy)  # ValueError naming the known policies
        try:
            registry.validate_params({**self.params, "name": self.policy})
        except ValidationError as exc:
            field, message = error_field(exc)
            raise ValueError(f"params.{field}: {message}") from exc
        return self


# Every band runs adaptive_bon: its greedy, confidence-gated first sample costs what `single`
# does when the model is sure, and only unsure answers pay for votes; harder bands may vote more.
DEFAULT_BANDS: tuple[BandConfig, ...] = (
    BandConfig(name="easy", upto=0.35, policy="adaptive_bon", params={"max_samples": 6}),
    BandConfig(name="medium", upto=0.65, policy="adaptive_bon", params={"max_samples": 12}),
    BandConfig(name="hard", policy="adaptive_bon", params={"max_samples": 16}),
)


class EffortConfig(_Section):
    """What one ``reasoning_effort`` level does: shift difficulty, scale sample budgets."""

    shift: float = Field(0.0, ge=-1.0, le=1.0)
    budget_scale: float = Field(1.0, gt=0.0, le=16.0)


class EffortTable(_Section):
    low: EffortConfig = EffortConfig(shift=-0.15, budget_scale=0.5)
    medium: EffortConfig = EffortConfig()
    high: EffortConfig = EffortConfig(shift=0.15, budget_scale=2.0)


class ProbeConfig(_Section):
    """One-token glimpse from a small tier when the cheap predictor is unsure."""

    mode: Literal["never", "unsure", "always"] = "unsure"
    tier: str | None = Field(None, description="null: the router's default tier")
    unsure_low: float = Field(0.35, ge=0.0, le=1.0)
    unsure_high: float = Field(0.65, ge=0.0, le=1.0)
    weight: float = Field(0.5, ge=0.0, le=1.0, description="probe's share of the difficulty")
    top_logprobs: int = Field(5, ge=2, le=20)
    rate: float = Field(1.0, ge=0.0, le=1.0, description="fraction of eligible requests probed")
    timeout_s: float = Field(5.0, gt=0.0)


class BudgetConfig(_Section):
    """Feedback control of average compute per request over a sliding window."""

    target: float | None = Field(None, gt=0.0, description="null: controller off")
    metric: Literal["samples", "tokens"] = "samples"
    window_s: float = Field(300.0, gt=0.0)
    # 10 s and 0.02: simulated traffic (tests/unit/test_router_budget.py) settles without
    # oscillating for 0.3-20 requests/s; a gain of 0.05 with a 300 s window overshoots.
    update_interval_s: float = Field(10.0, gt=0.0)
    gain: float = Field(0.02, gt=0.0, le=1.0)
    max_offset: float = Field(0.5, ge=0.0, le=1.0)
    min_requests: int = Field(20, ge=1)


class LoadConfig(_Section):
    """What the router does when the pool says a tier is saturated (0 idle .. 1 full)."""

    saturated_at: float = Field(0.85, gt=0.0, le=1.0)
    budget_scale: float = Field(0.5, gt=0.0, le=1.0)
    probe_rate_scale: float = Field(0.0, ge=0.0, le=1.0)
    easy_upto: float = Field(0.5, ge=0.0, le=1.0, description="bands ending here count as easy")


class TracesConfig(_Section):
    path: str | None = Field(None, description="JSONL file; null: no trace file")
    include_prompt: bool = False
    include_ngrams: bool = Field(True, description="hashed n-gram ids, for `ttc router train`")
    buffer: int = Field(10_000, ge=1, description="records held while the writer is behind")


class ShadowConfig(_Section):
    fraction: float = Field(0.0, ge=0.0, le=1.0)
    predictor: PredictorConfig | None = Field(None, description="null: the live predictor")
    bands: tuple[BandConfig, ...] | None = Field(None, description="null: the live bands")
    max_concurrent: int = Field(2, ge=1)
    timeout_s: float = Field(120.0, gt=0.0)


class RouterConfig(_Section):
    default_tier: str | None = Field(
        None, description="tier for model='auto' when no band names one (default: the first tier)"
    )
    predictor: PredictorConfig = LearnedConfig()
    bands: tuple[BandConfig, ...] = DEFAULT_BANDS
    effort: EffortTable = EffortTable()
    probe: ProbeConfig = ProbeConfig()
    budget: BudgetConfig = BudgetConfig()
    load: LoadConfig = LoadConfig()
    traces: TracesConfig = TracesConfig()
    shadow: ShadowConfig = ShadowConfig()
    tools: ToolsConfig = ToolsConfig()

    @model_validator(mode="after")
    def _ordered_bands(self) -> RouterConfig:
        check_bands(self.bands, "bands")
        if self.shadow.bands is not None:
            check_bands(self.shadow.bands, "shadow.bands")
        if self.probe.unsure_low > self.probe.unsure_high:
            raise ValueError("probe.unsure_low must not exceed probe.unsure_high")
        return self

    def unknown_tiers(self, tiers: tuple[str, ...]) -> list[str]:
        """Problems with tier names this section uses that ``tiers`` does not define."""
        named = [(f"router.bands.{b.name}.tier", b.tier) for b in self.bands]
        named += [(f"router.shadow.bands.{b.name}.tier", b.tier) for b in self.shadow.bands or ()]
        named.append(("router.probe.tier", self.probe.tier))
        named.append(("router.tools.tier", self.tools.tier))
        problems = [
            f"{key}: unknown tier {tier!r}" for key, tier in named if tier and tier not in tiers
        ]
        for band in (*self.bands, *(self.shadow.bands or ())):
            params = registry.validate_params({**band.params, "name": band.policy})
            problems += [
                f"router.bands.{band.name}.params.{p}" for p in unknown_tiers(params, tiers)
            ]
        return problems


def check_bands(bands: tuple[BandConfig, ...], key: str) -> None:
    """Bands must be non-empty, uniquely named, increasing, and end open (``upto: null``)."""
    if not bands:
        raise ValueError(f"{key}: at least one band is required")
    names = [b.name for b in bands]
    if len(set(names)) != len(names):
        raise ValueError(f"{key}: band names must be unique")
    uppers = [b.upto for b in bands[:-1]]
    if any(u is None for u in uppers) or bands[-1].upto is not None:
        raise ValueError(f"{key}: only the last band has upto: null, and it must")
    bounds = [u for u in uppers if u is not None]
    if any(a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
        raise ValueError(f"{key}: upto must increase from band to band")


__all__ = ["HeuristicConfig", "LearnedConfig", "PredictorConfig", "RouterConfig", "BandConfig"]
