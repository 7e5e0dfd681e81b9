"""Policy name -> its params model and implementation; ``build`` is the only factory.

Adding a policy is one new module plus one line:

1. ``policies/<name>.py`` defines the params model (a ``policies.params.PolicyParams`` subclass
   with ``name: Literal["<name>"] = "<name>"``, its budgets, caps and tiers marked on the
   fields), the implementation (a ``policies.base.Policy``), and ends with
   ``REGISTRATION = Registration(<Name>Params, <Name>Policy, Facts(...))``: its facts
   (``policies.facts``: worst-case bound, request and answer shapes, engine needs, load and
   tool behaviour);
2. its module path goes in ``MODULES`` below.

Everything else follows from that: the ``policies.<name>`` config section and its validation,
``ttc.policy`` and the request's overrides, band params, budget scaling, caps and tier roles,
and what the router, load scaling, reservations and tool routing do with it.
The modules are imported on first use (validating a config, or building a policy), never at
import of this one.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from core.request import Decision, PolicySpec
from policies.base import Policy, Registration
from policies.budgeted import budgeted
from policies.facts import Facts
from policies.params import PolicyParams

MODULES: tuple[str, ...] = (
    "policies.single",
    "policies.adaptive_bon",
    "policies.convergence",
    "policies.speculative",
    "policies.cascade",
)


@functools.cache
def registrations() -> Mapping[str, Registration[Any]]:
    """Every registered policy by name, in ``MODULES`` order."""
    found: dict[str, Registration[Any]] = {}
    for module_name in MODULES:
        registration = getattr(importlib.import_module(module_name), "REGISTRATION", None)
        if not isinstance(registration, Registration):
            raise TypeError(f"{module_name} defines no REGISTRATION = Registration(...)")
        found[registration.name] = registration
    return found


def names() -> tuple[str, ...]:
    return tuple(registrations())


def facts(name: str) -> Facts:
    """What the gateway knows of policy ``name`` (``policies.facts``)."""
    registration = registrations().get(name)
    if registration is None:
        raise LookupError(f"unknown policy {name!r}; expected one of: {', '.join(names())}")
    return registration.facts


def plain_name() -> str:
    """The one-sample policy the router falls back to (the one whose facts say ``plain``)."""
    plain = [name for name, r in registrations().items() if r.facts.plain]
    if len(plain) != 1:
        raise TypeError(f"exactly one registered policy must be plain, found {plain}")
    return plain[0]


def names_where(test: Callable[[Facts], bool]) -> tuple[str, ...]:
    """The registered policies whose facts pass ``test``, in ``MODULES`` order."""
    return tuple(name for name, r in registrations().items() if test(r.facts))


def params_model(name: str) -> type[PolicyParams]:
    """The params model of policy ``name``; ValueError naming the known ones if there is none."""
    registration = registrations().get(name)
    if registration is None:
        raise ValueError(f"unknown policy {name!r}; expected one of: {', '.join(names())}")
    model: type[PolicyParams] = registration.params
    return model


def validate_params(data: Mapping[str, Any]) -> PolicyParams:
    """The params for ``data``, whose ``name`` picks the policy; ValidationError if bad."""
    return params_model(str(data.get("name"))).model_validate(data)


def build(spec: PolicySpec) -> Policy:
    """The policy for validated params (``Decision.params``)."""
    return registrations()[spec.name].factory(spec)


def for_decision(decision: Decision) -> Policy:
    """The policy a request runs: ``build(decision.params)``, holding the request's thinking
    budget on a reasoning tier (``policies.budgeted``)."""
    policy = build(decision.params)
    return policy if decision.thinking is None else budgeted(policy)
