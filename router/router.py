"""``Router``: turn a request into a ``Decision`` (tier, policy, params, budget) before generating.

The steps, each of which adds a line to the decision's ``reasons`` (the ``ttc`` report):
1. features -> the configured cheap predictor -> difficulty in [0, 1];
2. if the predictor is unsure, a one-token probe of the small tier refines it (``route`` only:
   it needs the backend; its tokens are billed as usage kind "probe");
3. ``reasoning_effort`` shifts the difficulty and the budget controller's offset moves the
   thresholds; the band the result falls in gives tier, policy and params;
4. ``model`` naming a tier pins the tier; ``ttc.policy`` pins the policy; ``reasoning_effort``
   scales the budget; a saturated tier scales it down and drops speculation on easy bands;
5. the request's ``ttc`` overrides are applied, validated and capped (``policies.overrides``:
   the router picks, the policies' own table of budgets and caps validates).

``decide`` is the synchronous path without a probe; ``route`` is what the server awaits.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from core.backend import Backend
from core.errors import ModelNotFound, TtcError, quoted
from core.profile import ModelProfile
from core.request import Decision, GenRequest
from core.result import PolicyResult
from core.usage import TokenUsage
from policies import overrides, registry
from policies.config import PoliciesConfig
from policies.params import PolicyParams
from policies.tiers import TierLadder, with_tiers
from router.answer_shape import AnswerShape, predict_shape
from router.bands import Band, build_bands, select
from router.budget import BudgetController
from router.capable import Capabilities, capable
from router.config import EffortConfig, EffortTable, ProbeConfig, RouterConfig
from router.contract import contract_tokens, probe_affordable, samples_within
from router.counters import RouterCounters
from router.features import Features, extract
from router.load import LoadSignal, NoLoadSignal, assess, shed
from router.predictor import DifficultyPredictor, build
from router.probe import DifficultyProbe, FirstTokenProbe, ProbeFailed, Prober
from router.routed import Recorder, Routing
from router.shapes import (
    greedy,
    refuse_logprobs_if_pinned,
    refuse_n_for_one_answer,
    text_runs_single,
    token_prompt,
)
from router.stats import LocalStats, StatsSource
from router.thinking import BandThinking, plan_thinking
from router.tools import ToolTiers, tool_params

AUTO_MODEL = "auto"


class Router:
    """Decides each request; ``tiers`` are the configured tier names, or a mapping of them to
    ``cost_per_1k_tokens`` so that policies needing two tiers take the cheapest and the dearest
    (``policies.tiers``; without costs the first is the cheapest). ``profiles`` maps a tier to
    its model profile (``core.profile``; a tier missing from it is a plain model): what it can
    do (thinking budgets, ``router.thinking``)."""

    def __init__(
        self,
        config: RouterConfig,
        policies: PoliciesConfig,
        tiers: Sequence[str] | Mapping[str, float],
        *,
        stats: StatsSource | None = None,
        profiles: Mapping[str, ModelProfile] | None = None,
        lengths: Mapping[str, int | None] | None = None,
        capabilities: Capabilities | None = None,
        load: LoadSignal | None = None,
        shadow_backend: Backend | None = None,
        prober: Prober | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tiers = tuple(tiers)  # config order: the first is the default tier
        self._tier_costs = tiers
        problems = config.unknown_tiers(self._tiers)
        if problems:
            raise ValueError("; ".join(problems))
        self._config = config
        self._policies = policies
        self._profiles: Mapping[str, ModelProfile] = profiles or {}
        self._lengths: Mapping[str, int | None] = lengths or {}
        self._capabilities: Capabilities = capabilities or {}  # router.capable
        self._tool_tiers = ToolTiers(self._profiles, config.tools.tier)  # router.tools
        self._ladder = (
            TierLadder.by_cost(tiers) if isinstance(tiers, Mapping) else TierLadder(self._tiers)
        )
        self._predictor: DifficultyPredictor = build(config.predictor)
        self._prober: Prober = prober or FirstTokenProbe(config.probe)
        self._bands = build_bands(config.bands, policies)
        self._load: LoadSignal = load or NoLoadSignal()
        self._rng = rng or random.Random()
        self.counters = RouterCounters()
        stats = stats or LocalStats(clock)
        self.controller = BudgetController(config.budget, stats, clock)
        self.recorder = Recorder(
            config, stats, self.counters, self._shadow_decider(), shadow_backend
        )

    @property
    def tier_costs(self) -> dict[str, float]:
        """``cost_per_1k_tokens`` per tier (empty when the config gave no costs)."""
        costs = self._tier_costs
        return dict(costs) if isinstance(costs, Mapping) else {}

    @property
    def default_tier(self) -> str:
        return self._config.default_tier or self._tiers[0]

    @property
    def bands(self) -> tuple[Band, ...]:
        return self._bands

    def decide(self, req: GenRequest) -> Decision:
        """The decision from the cheap predictor alone (no probe, no I/O)."""
        _, predicted, reasons = self._predict(req)
        return self._plan(req, predicted, reasons)

    async def route(self, req: GenRequest, backend: Backend) -> Routing:
        """``decide``, refined by a probe when the predictor is unsure."""
        self.controller.tick()
        if req.body_bytes >= OFF_LOOP_BYTES:  # a big prompt: ms of regex and hashing
            features, predicted, reasons = await asyncio.to_thread(self._predict, req)
        else:
            features, predicted, reasons = self._predict(req)
        if self._wants_probe(req, predicted):
            # A dry run first: a bad model, policy or override fails before a probe is spent.
            self._plan(req, predicted, [], count=False)
        probe, usage = await self._maybe_probe(req, backend, predicted, reasons)
        difficulty = predicted
        scores = {self._predictor.name: predicted}
        if probe is not None:
            weight = self._config.probe.weight
            difficulty = (1 - weight) * predicted + weight * probe.difficulty
            scores["probe"] = probe.difficulty
        decision = self._plan(req, difficulty, reasons)
        return Routing(decision, features, scores, usage, self._probe_tier, time.monotonic())

    def with_default_length(self, req: GenRequest, decision: Decision) -> GenRequest:
        """``req`` with its tier's ``default_max_tokens`` when the client sent no max_tokens
        (and, a text completion that scores its prompt aside, nothing else bounds it)."""
        length = self._lengths.get(decision.tier)
        if length is None or req.max_tokens is not None or req.passthrough.get("echo"):
            return req
        return replace(req, sampling={**req.sampling, "max_tokens": length})

    def record(
        self, routing: Routing, req: GenRequest, result: PolicyResult, latency_s: float
    ) -> None:
        """One finished request: its trace, the windowed statistics the controller reads, and
        maybe a shadow run; never blocks."""
        self.recorder.observe(req, routing, result, latency_s)

    async def aclose(self) -> None:
        await self.controller.aclose()
        await self.recorder.aclose()

    def _predict(self, req: GenRequest) -> tuple[Features, float, list[str]]:
        if self._prediction_unused(req):
            unread = Features(**dict.fromkeys(Features.names(), 0.0))
            return unread, 0.0, ["predictor skipped: tier and policy pinned (difficulty 0)"]
        features = extract(req)
        predicted = min(max(float(self._predictor.score(req, features)), 0.0), 1.0)
        return features, predicted, [f"{self._predictor.name} predictor: {predicted:.2f}"]

    def _prediction_unused(self, req: GenRequest) -> bool:
        """Whether no difficulty could change what the request gets: ``model`` names a tier,
        ``ttc.policy`` pins a policy that no band runs (so no band's params apply), no probe
        would run at the difficulty assumed instead (0), and no trace records the features."""
        if req.model == AUTO_MODEL or self._config.traces.path or self._wants_probe(req, 0.0):
            return False
        pinned = overrides.requested_policy(req.ttc)
        return pinned is not None and all(band.params.name != pinned for band in self._bands)

    # probe -------------------------------------------------------------------------------
    @property
    def _probe_tier(self) -> str:
        return self._config.probe.tier or self.default_tier

    def _wants_probe(self, req: GenRequest, predicted: float) -> bool:
        probe: ProbeConfig = self._config.probe
        if probe.mode == "never" or req.needs_single or req.passthrough.get("echo"):
            return False  # echo upstream: a scoring request, one call whatever its difficulty
        if token_prompt(req):
            return False  # no text to probe with; one call as sent
        if not probe_affordable(req, contract_tokens(req, self.tier_costs, self._probe_tier)):
            return False  # a small compute contract: samples need the tokens more
        return probe.mode == "always" or probe.unsure_low <= predicted <= probe.unsure_high

    async def _maybe_probe(
        self, req: GenRequest, backend: Backend, predicted: float, reasons: list[str]
    ) -> tuple[DifficultyProbe | None, TokenUsage | None]:
        if not self._wants_probe(req, predicted):
            return None, None
        load = assess(self._load, self._probe_tier, self._config.load)
        rate = self._config.probe.rate
        if load.saturated:
            rate *= self._config.load.probe_rate_scale
        if self._rng.random() >= rate:
            outcome = "skipped_load" if load.saturated else "skipped_rate"
            self.counters.probes[outcome] += 1
            if load.saturated:
                reasons.append(f"{load.reason()}: probe skipped")
            return None, None
        try:
            result = await self._prober.probe(req, backend, self._probe_tier)
        except (ProbeFailed, TtcError) as exc:
            self.counters.probes["failed"] += 1
            reasons.append(f"probe failed ({exc}); predictor alone")
            usage = exc.usage if isinstance(exc, ProbeFailed) else None
            self._count_probe_tokens(usage)
            return None, usage
        self.counters.probes["ok"] += 1
        self._count_probe_tokens(result.usage)
        reasons.append(
            f"probe: first-token entropy {result.entropy:.2f} -> {result.difficulty:.2f}"
        )
        return result, result.usage

    def _count_probe_tokens(self, usage: TokenUsage | None) -> None:
        if usage is not None:
            self.counters.probe_prompt_tokens += usage.prompt_tokens
            self.counters.probe_completion_tokens += usage.completion_tokens

    # decision ----------------------------------------------------------------------------
    def _plan(
        self, req: GenRequest, difficulty: float, reasons: list[str], *, count: bool = True
    ) -> Decision:
        effort = _effort(self._config.effort, req.reasoning_effort)
        shifted = difficulty + effort.shift - self.controller.offset
        band = select(self._bands, shifted)
        moved = f", shifted to {shifted:.2f}" if shifted != difficulty else ""
        reasons.append(f"difficulty {difficulty:.2f}{moved} -> band {band.describe()}")
        if effort.shift:
            reasons.append(
                f"reasoning_effort {req.reasoning_effort}: bands shifted {effort.shift:+g}"
            )
        if self.controller.offset:
            reasons.append(f"budget controller: thresholds moved {self.controller.offset:+.3f}")
        tier = self._tier(req, band, reasons)
        shape = predict_shape(req)
        params = self._params(req, band, tier, effort.budget_scale, reasons, count, shape)
        banded = BandThinking(band.name, band.thinking_budget, effort.budget_scale)
        thinking = plan_thinking(req, self._profiles.get(tier), tier, reasons, banded)
        return Decision(
            tier, params, difficulty, band.name, tuple(reasons), thinking, shape=shape.shape
        )

    def _tier(self, req: GenRequest, band: Band, reasons: list[str]) -> str:
        if req.model != AUTO_MODEL:
            if req.model not in self._tiers:
                raise ModelNotFound(f"The model {quoted(req.model)} does not exist", param="model")
            reasons.append(f"tier pinned by model: {req.model}")
            return self._tool_tiers.tier_for(req, req.model, pinned=True, reasons=reasons)
        tier = band.tier or self.default_tier
        reasons.append(f"tier from band {band.name}: {tier}")
        return self._tool_tiers.tier_for(req, tier, pinned=False, reasons=reasons)

    def _params(
        self,
        req: GenRequest,
        band: Band,
        tier: str,
        scale: float,
        reasons: list[str],
        count: bool,
        shape: AnswerShape,
    ) -> PolicyParams:
        pinned = overrides.requested_policy(req.ttc)
        refuse_n_for_one_answer(pinned, req)
        params = band.params
        if pinned is not None:
            reasons.append(f"policy pinned by request: {pinned}")
            if pinned != band.params.name:
                params = self._policies.named(pinned)
        if scale != 1.0:
            reasons.append(f"reasoning_effort {req.reasoning_effort}: budget x{scale:g}")
        load = assess(self._load, tier, self._config.load)
        if load.saturated:
            self.counters.load_shed += int(count)
            scale *= self._config.load.budget_scale
            reasons.append(f"{load.reason()}: budget x{self._config.load.budget_scale:g}")
            if pinned is None and band.upper <= self._config.load.easy_upto:
                params = shed(params, self._policies.named(registry.plain_name()), reasons)
        params = overrides.scale_budget(params, scale, self._policies.caps)
        if req.needs_single:
            return tool_params(req, params, pinned, self._config.tools, self._policies, reasons)
        if req.text_only and text_runs_single(req, params.name, pinned, reasons):
            return self._policies.named(registry.plain_name())
        params, ttc = self._switched(req, params, pinned, reasons, shape)
        params = overrides.with_overrides(params, ttc, self._policies)
        params = samples_within(params, req, contract_tokens(req, self.tier_costs, tier), reasons)
        params, notes = with_tiers(params, self._ladder)
        reasons.extend(notes)
        plain = self._policies.named(registry.plain_name())
        return capable(params, tier, pinned, self._capabilities, plain, reasons)

    def _switched(
        self,
        req: GenRequest,
        params: PolicyParams,
        pinned: str | None,
        reasons: list[str],
        shape: AnswerShape,
    ) -> tuple[PolicyParams, Mapping[str, Any]]:
        """The plain policy where the band's cannot serve the request as sent (greedy samples
        cannot vote; ``n`` samples are what the client asked for; joined steps have no
        logprobs; an open answer shape the policy does not serve), with the overrides that
        still apply."""
        facts = registry.facts(params.name)
        why = None
        if not facts.logprobs and req.sampling.get("logprobs"):
            refuse_logprobs_if_pinned(pinned)
            why = f"logprobs asked: {params.name} has none to return; {registry.plain_name()}"
        elif pinned is None and facts.votes and greedy(req):
            why = f"temperature 0: identical samples cannot vote; {registry.plain_name()}"
        elif pinned is None and not facts.plain and req.n > 1:
            why = f"n={req.n}: the client asked for that many samples; {registry.plain_name()}"
        elif pinned is None and shape.excludes(facts.shapes):
            why = f"{shape.reason()}; more samples cannot vote on it: one sample"
        if why is None:
            return params, req.ttc
        reasons.append(why)
        plain = self._policies.named(registry.plain_name())
        return plain, overrides.for_switched(req.ttc, plain, reasons)

    def _shadow_decider(self) -> Router | None:
        shadow = self._config.shadow
        if shadow.fraction <= 0:
            return None
        config = RouterConfig(
            default_tier=self._config.default_tier,
            predictor=shadow.predictor or self._config.predictor,
            bands=shadow.bands or self._config.bands,
            effort=self._config.effort,
            probe=ProbeConfig(mode="never"),
        )
        return Router(config, self._policies, self._tier_costs, profiles=self._profiles)


def _effort(table: EffortTable, level: str | None) -> EffortConfig:
    """The config of a ``reasoning_effort`` level; none (or an unknown one) is medium."""
    efforts: dict[str | None, EffortConfig] = {
        "minimal": table.low,
        "low": table.low,
        "high": table.high,
    }
    return efforts.get(level, table.medium)


# 64 KiB of request body: below it prediction costs about a millisecond on the event loop.
OFF_LOOP_BYTES = 65_536

__all__ = ["AUTO_MODEL", "Router", "Routing"]
