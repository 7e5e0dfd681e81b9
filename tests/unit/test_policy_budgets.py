"""Compute budgets of every policy scale with ``reasoning_effort`` (and load, and the budget
controller), within the caps; a request's overrides are validated against the same table."""

from __future__ import annotations

import math

from core.request import GenRequest
from policies.params import ConvergenceParams, PoliciesConfig
from router.config import BandConfig, RouterConfig
from router.predictor import HeuristicConfig
from router.router import Router

CHAIN = (BandConfig(name="all", policy="convergence"),)


def chain_budget(effort: str | None) -> int:
    predictor = HeuristicConfig(bias=math.log(0.5 / 0.5), weights={})
    router = Router(RouterConfig(predictor=predictor, bands=CHAIN), PoliciesConfig(), ("small",))
    params = router.decide(GenRequest(messages=(), reasoning_effort=effort)).params
    assert isinstance(params, ConvergenceParams)
    return params.default_budget


def test_convergence_chain_budget_scales_with_reasoning_effort() -> None:
    default = ConvergenceParams().default_budget
    assert chain_budget(None) == default
    assert chain_budget("high") == 2 * default
    assert chain_budget("low") == default // 2
