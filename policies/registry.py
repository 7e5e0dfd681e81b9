"""Policy name -> implementation; ``build`` is the only factory.

Implementations are imported when first built, so a deployment that never uses a policy never
imports it. A new policy adds one line here and one params model in ``policies.params``.
"""

from __future__ import annotations

import importlib
from typing import Any

from core.request import PolicySpec
from policies.base import Policy

_FACTORIES: dict[str, str] = {
    "single": "policies.single:SinglePolicy",
    "adaptive_bon": "policies.adaptive_bon:AdaptiveBonPolicy",
    "convergence": "policies.convergence:ConvergencePolicy",
    "speculative": "policies.speculative:SpeculativePolicy",
    "cascade": "policies.cascade:CascadePolicy",
}


def available() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def build(spec: PolicySpec) -> Policy:
    module_name, _, attr = _FACTORIES[spec.name].partition(":")
    factory: Any = getattr(importlib.import_module(module_name), attr)
    policy: Policy = factory(spec)
    return policy
