"""``cascade``: answer on the small tier when it is sure, escalate to the large tier when not.

The small tier runs ``adaptive_bon`` with at most ``small_max_samples`` samples. When its
report's ``confidence`` is below ``escalate_below``, or it extracted no answer at all, the
large tier answers with ``large_policy`` (``single``, or ``adaptive_bon`` with its defaults)
and that answer is returned. Usage holds every token of both stages, itemised by tier. The
tiers come from the config (``policies.tiers``: named, else the cheapest and the dearest); on
a one-tier config both stages run on it, so escalation only spends a larger vote.

``stream`` runs the stages' own streams: their rounds' ``Progress`` relabelled as the
cascade's (counts running on across stages), one more after the small stage with
``escalating``, then the answer as soon as it is decided (see ``CascadePolicy.stream``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from core.backend import Backend, Delta, close_now
from core.errors import ContractReached
from core.progress import Progress, short_leader
from core.request import Decision, GenRequest
from core.result import PolicyResult
from core.tracing import streamed_as, subcall
from core.usage import UsageLedger
from policies import registry, worst_case
from policies.adaptive_bon import AdaptiveBonParams
from policies.base import Policy, PolicyEvent, Registration
from policies.facts import Facts
from policies.params import Budget, PolicyParams, TierRole
from policies.single import SingleParams
from policies.tiers import resolved_tier
from policies.worst_case import Shape

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
    # The large stage's adaptive_bon: scaled by effort and capped like any sample budget.
    large_max_samples: Annotated[int, Budget("max_samples")] = Field(16, ge=1, le=256)


def small_params(params: CascadeParams) -> AdaptiveBonParams:
    """The small stage's ``adaptive_bon``: its defaults, within ``small_max_samples``."""
    return _within(params.small_max_samples)


def large_params(params: CascadeParams) -> PolicyParams:
    if params.large_policy == "single":
        return SingleParams()
    return _within(params.large_max_samples)


def _within(cap: int) -> AdaptiveBonParams:
    """``adaptive_bon``'s defaults within ``cap`` samples, its first-sample gate kept on (a
    first round as large as the cap would make it fixed best-of-``cap``, dearer than asked)."""
    first = min(AdaptiveBonParams().min_samples, max(cap - 1, 1))
    return AdaptiveBonParams(max_samples=cap, min_samples=first)


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


@dataclass
class _Relay:
    """A stage's ``Progress`` as the cascade's: its counts continue the earlier stages'."""

    rounds: int = 0  # of the stages before the one running
    samples: int = 0
    completion_tokens: int = 0
    last_round: int = 0

    def relabel(self, progress: Progress, stage: str) -> Progress:
        self.last_round = self.rounds + progress.round
        return replace(
            progress,
            policy="cascade",
            stage=stage,
            round=self.last_round,
            samples=self.samples + progress.samples,
            completion_tokens=self.completion_tokens + progress.completion_tokens,
        )

    def verdict(self, small: PolicyResult, tier: str, escalate: bool) -> Progress:
        """After the small stage: its answer and confidence, and whether the cascade escalates
        (then the large stage's counts continue from these)."""
        report = small.report
        self.rounds = max(self.last_round, self.rounds + 1)
        self.samples += int(report.get("samples", 0))
        self.completion_tokens += small.usage.total.completion_tokens
        answer = report.get("answer")
        answer = answer if isinstance(answer, str) else None
        votes = report.get("votes") or {}
        confidence = report.get("confidence")
        return Progress(
            policy="cascade",
            tier=tier,
            round=self.rounds,
            samples=self.samples,
            completion_tokens=self.completion_tokens,
            leader=short_leader(answer),
            votes=int(votes.get(answer, 0)) if answer is not None else 0,
            confidence=float(confidence) if isinstance(confidence, int | float) else None,
            stop_reason=None if escalate else report.get("stop_reason"),
            stage="small",
            escalating=escalate,
        )


@dataclass
class _Stage:
    """One stage's stream as the cascade relays it: progress relabelled and passed on, the
    answer's deltas passed on when ``live`` or else held, the result kept."""

    name: str
    events: AsyncIterator[PolicyEvent]
    held: list[Delta] = field(default_factory=list)
    _result: PolicyResult | None = None

    @property
    def result(self) -> PolicyResult:
        if self._result is None:
            raise RuntimeError(f"the cascade's {self.name} stage ended without a result")
        return self._result

    async def follow(self, relay: _Relay, *, live: bool) -> AsyncGenerator[PolicyEvent, None]:
        try:
            async for event in self.events:
                if isinstance(event, PolicyResult):
                    self._result = event
                elif isinstance(event, Progress):
                    yield relay.relabel(event, self.name)
                elif live:
                    yield event
                else:
                    self.held.append(event)
        finally:
            await close_now(self.events)


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
        if not should_escalate(small.report, self.params.escalate_below):
            return self._answered(small)
        large_spec = large_params(self.params)
        try:
            with subcall("escalation"):  # the large stage's calls, in traces
                large = await self._stage(req, decision, backend, self.large_tier, large_spec)
        except ContractReached:  # the compute contract is spent: the small tier's answer stands
            return self._answered(small)
        return self._escalated(small, large)

    async def stream(
        self, req: GenRequest, decision: Decision, backend: Backend
    ) -> AsyncGenerator[PolicyEvent, None]:
        """Each stage's rounds as the cascade's ``Progress``, and one more after the small stage
        saying whether it escalates; then the answer: the small stage's (held until that
        verdict), or the large stage's as it streams. Under a compute contract the large
        stage's answer is held until it completes too: a contract that stops it falls back to
        the small tier's answer, as ``run`` does, which must not follow half of another."""
        relay = _Relay()
        small_spec = small_params(self.params)
        small = _Stage("small", self._events(req, decision, backend, self.small_tier, small_spec))
        async with contextlib.aclosing(small.follow(relay, live=False)) as events:
            async for event in events:
                yield event
        escalate = should_escalate(small.result.report, self.params.escalate_below)
        yield relay.verdict(small.result, self.small_tier, escalate)
        if escalate:
            large_spec = large_params(self.params)
            stage = self._events(req, decision, backend, self.large_tier, large_spec)
            stage = streamed_as("escalation", stage)  # the large stage's calls, in traces
            large, live = _Stage("large", stage), not req.contract.bounded
            try:
                async with contextlib.aclosing(large.follow(relay, live=live)) as events:
                    async for event in events:
                        yield event
            except ContractReached:  # only under a contract, so nothing of it was sent
                pass
            else:
                for delta in large.held:
                    yield delta
                yield self._escalated(small.result, large.result)
                return
        for delta in small.held:
            yield delta
        yield self._answered(small.result)

    def _answered(self, small: PolicyResult) -> PolicyResult:
        """The small stage's answer as the cascade's."""
        summary = stage_report(small.report, self.small_tier, small_params(self.params).name)
        report = self._report(summary, None, small.report)
        return PolicyResult(choices=small.choices, usage=small.usage, report=report)

    def _escalated(self, small: PolicyResult, large: PolicyResult) -> PolicyResult:
        """The large stage's answer, with both stages' usage."""
        small_summary = stage_report(small.report, self.small_tier, small_params(self.params).name)
        large_summary = stage_report(large.report, self.large_tier, self.params.large_policy)
        return PolicyResult(
            choices=large.choices,
            usage=merged_usage(small.usage, large.usage),
            report=self._report(small_summary, large_summary, large.report),
        )

    async def _stage(
        self, req: GenRequest, decision: Decision, backend: Backend, tier: str, spec: PolicyParams
    ) -> PolicyResult:
        """Run one stage's policy on ``tier``, as though the router had planned it so."""
        stage_plan = replace(decision, tier=tier, params=spec)
        return await self._build(spec).run(req, stage_plan, backend)

    def _events(
        self, req: GenRequest, decision: Decision, backend: Backend, tier: str, spec: PolicyParams
    ) -> AsyncIterator[PolicyEvent]:
        """Stream one stage's policy on ``tier``, as ``_stage`` runs it."""
        stage_plan = replace(decision, tier=tier, params=spec)
        return self._build(spec).stream(req, stage_plan, backend)

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


def cascade_worst_case(params: CascadeParams, shape: Shape) -> int:
    """The small stage's vote, then the escalation with the large stage's policy."""
    large = large_params(params)
    small = worst_case.adaptive_bon(small_params(params), shape)
    return small + registry.facts(large.name).worst_case(large, shape)


REGISTRATION = Registration(
    CascadeParams,
    CascadePolicy,
    Facts(
        worst_case=cascade_worst_case,
        one_answer=True,
        needs=frozenset({"logprobs"}),
        shapes=frozenset({"closed"}),
    ),
)
