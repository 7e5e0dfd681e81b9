"""``cascade``: answer on the small tier when it is sure, escalate to the large tier when not.

The small tier runs ``adaptive_bon`` with at most ``small_max_samples`` samples. When its
report's ``confidence`` is below ``escalate_below``, or it extracted no answer at all, the
large tier answers with ``large_policy`` (``single``, or ``adaptive_bon`` with its defaults)
and that answer is returned. Usage holds every token of both stages, itemised by tier. The
tiers come from the config (``policies.tiers``: named, else the cheapest and the dearest); on
a one-tier config both stages run on it, so escalation only spends a larger vote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from core.backend import Backend, Delta
from core.errors import ContractReached
from core.request import Decision, GenRequest
from core.result import PolicyResult
from core.usage import UsageLedger
from policies import registry
from policies.adaptive_bon import AdaptiveBonParams
from policies.base import Policy, Registration, stream_whole
from policies.params import Budget, PolicyParams, TierRole
from policies.single import SingleParams
from policies.tiers import resolved_tier

# Report fields of each stage worth repeating in the cascade's own report.
_STAGE_FIELDS = ("samples", "confidence", "answer", "stop_reason", "early_stopped")


class CascadeParams(PolicyParams):
    """Try the small tier cheaply; escalate to the large tier when it is unsure."""

    name: Literal["cascade"] = "cascade"
    # None: the cheapest / dearest configured tier (``policies.tiers``).
    small_tier: Annotated[str | None, TierRole("cheapest")] = None
    large_tier: Annotated[str | None, TierRole("dearest")] = None
    small_max_samples: Annotated[int, Budget("max_samples")] = Field(4, ge=1, le=64)
    escalate_below: float = Field(0.8, ge=0.0, le=1.0)
    large_policy: Literal["single", "adaptive_bon"] = "adaptive_bon"


def small_params(params: CascadeParams) -> AdaptiveBonParams:
    """The small stage's ``adaptive_bon``: its defaults, within ``small_max_samples``."""
    defaults = AdaptiveBonParams()
    cap = params.small_max_samples
    return AdaptiveBonParams(max_samples=cap, min_samples=min(defaults.min_samples, cap))


def large_params(params: CascadeParams) -> PolicyParams:
    return SingleParams() if params.large_policy == "single" else AdaptiveBonParams()


def should_escalate(report: Mapping[str, Any], escalate_below: float) -> bool:
    """Escalate unless the small stage found an answer with confidence >= ``escalate_below``."""
    confidence = report.get("confidence")
    if report.get("answer") is None or not isinstance(confidence, int | float):
        return True
    return float(confidence) < escalate_below


def merged_usage(*ledgers: UsageLedger) -> UsageLedger:
    merged = UsageLedger()
    for ledger in ledgers:
        for kind, tier, usage in ledger.items():
            merged.add(kind, tier, usage)
    return merged


def stage_report(report: Mapping[str, Any], tier: str, policy: str) -> dict[str, Any]:
    summary = {key: report[key] for key in _STAGE_FIELDS if key in report}
    return {"tier": tier, "policy": policy, **summary}


PolicyFactory = Callable[[PolicyParams], Policy]


class CascadePolicy:
    """``build`` makes each stage's policy; ``policies.registry.build`` unless a test swaps it."""

    name: ClassVar[str] = "cascade"

    def __init__(self, params: CascadeParams, build: PolicyFactory = registry.build) -> None:
        self.params = params
        self.small_tier = resolved_tier(params, "small_tier")
        self.large_tier = resolved_tier(params, "large_tier")
        self._build = build

    async def run(self, req: GenRequest, decision: Decision, backend: Backend) -> PolicyResult:
        small_spec = small_params(self.params)
        small = await self._stage(req, decision, backend, self.small_tier, small_spec)
        small_summary = stage_report(small.report, self.small_tier, small_spec.name)
        answered = PolicyResult(
            choices=small.choices,
            usage=small.usage,
            report=self._report(small_summary, None, small.report),
        )
        if not should_escalate(small.report, self.params.escalate_below):
            return answered
        large_spec = large_params(self.params)
        try:
            large = await self._stage(req, decision, backend, self.large_tier, large_spec)
        except ContractReached:  # the compute contract is spent: the small tier's answer stands
            return answered
        large_summary = stage_report(large.report, self.large_tier, large_spec.name)
        return PolicyResult(
            choices=large.choices,
            usage=merged_usage(small.usage, large.usage),
            report=self._report(small_summary, large_summary, large.report),
        )

    def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncIterator[Delta | PolicyResult]:
        return stream_whole(self, req, decision, backend)

    async def _stage(
        self, req: GenRequest, decision: Decision, backend: Backend, tier: str, spec: PolicyParams
    ) -> PolicyResult:
        """Run one stage's policy on ``tier``, as though the router had planned it so."""
        stage_plan = replace(decision, tier=tier, params=spec)
        return await self._build(spec).run(req, stage_plan, backend)

    def _report(
        self,
        small: dict[str, Any],
        large: dict[str, Any] | None,
        final: Mapping[str, Any],
    ) -> dict[str, Any]:
        escalated = large is not None
        report: dict[str, Any] = {
            "escalated": escalated,
            "escalate_below": self.params.escalate_below,
            "final_tier": self.large_tier if escalated else self.small_tier,
            "small": small,
            "samples": int(small.get("samples", 0)) + int((large or {}).get("samples", 0)),
            "answer": final.get("answer"),
            "confidence": final.get("confidence"),
            "early_stopped": bool(final.get("early_stopped", False)),
        }
        if large is not None:
            report["large"] = large
        if "stop_reason" in final:
            report["stop_reason"] = final["stop_reason"]
        return report


REGISTRATION = Registration(CascadeParams, CascadePolicy)
