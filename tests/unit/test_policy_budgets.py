"""The one table of budgets and caps (markers on each policy's params fields): budgets scale
with ``reasoning_effort`` (and load, and the budget controller) within the caps; a request's
overrides are checked against the same caps; a policy added as one module plus one registration
gets all of it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from core.errors import InvalidRequest
from core.request import GenRequest
from policies import registry
from policies.config import PoliciesConfig
from policies.convergence import ConvergenceParams
from policies.params import Capped, PolicyCaps, marked
from router.config import BandConfig, RouterConfig
from router.predictor import HeuristicConfig
from router.router import Router
from tests.fakes import ScriptedBackend
from tests.unit.echo_policy import EchoParams

MIDDLE = HeuristicConfig(bias=math.log(0.5 / 0.5), weights={})


def router(band: BandConfig, policies: PoliciesConfig | None = None) -> Router:
    config = RouterConfig(predictor=MIDDLE, bands=(band,))
    return Router(config, policies or PoliciesConfig(), ("small",))


def chain_budget(effort: str | None) -> int:
    decide = router(BandConfig(name="all", policy="convergence")).decide
    params = decide(GenRequest(messages=(), reasoning_effort=effort)).params
    assert isinstance(params, ConvergenceParams)
    return params.default_budget


def test_convergence_chain_budget_scales_with_reasoning_effort() -> None:
    default = ConvergenceParams().default_budget
    assert chain_budget(None) == default
    assert chain_budget("high") == 2 * default
    assert chain_budget("low") == default // 2


def test_every_cap_in_the_table_is_a_configured_cap() -> None:
    for name, registration in registry.registrations().items():
        for field, mark in marked(registration.params, Capped).items():
            assert mark.cap is None or mark.cap in PolicyCaps.model_fields, (name, field)


def test_a_request_may_not_raise_any_budget_above_its_cap() -> None:
    cascade = router(BandConfig(name="all", policy="cascade"))
    ttc: dict[str, Any] = {"policy": "cascade", "small_max_samples": 17}
    with pytest.raises(InvalidRequest) as info:
        cascade.decide(GenRequest(messages=(), ttc=ttc))
    assert (info.value.param, info.value.code) == ("ttc.small_max_samples", "above_cap")


@pytest.fixture
def echo_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "MODULES", (*registry.MODULES, "tests.unit.echo_policy"))
    registry.registrations.cache_clear()
    yield
    registry.registrations.cache_clear()


@pytest.mark.usefixtures("echo_registered")
async def test_a_new_policy_is_one_module_plus_one_registration() -> None:
    policies = PoliciesConfig.model_validate({"echo": {"repeats": 3}})
    assert policies.of(EchoParams).repeats == 3
    echo = router(BandConfig(name="all", policy="echo", params={"repeats": 4}), policies)
    high = echo.decide(GenRequest(messages=(), reasoning_effort="high")).params
    assert isinstance(high, EchoParams) and high.repeats == 8  # a budget, scaled
    with pytest.raises(InvalidRequest, match="cap"):
        echo.decide(GenRequest(messages=(), ttc={"policy": "echo", "repeats": 17}))
    req = GenRequest(messages=({"role": "user", "content": "hi"},))
    decision = echo.decide(req)
    backend = ScriptedBackend(lambda tier, body: [])
    result = await registry.build(decision.params).run(req, decision, backend)
    assert result.choices[0].text == "hihihihi"
