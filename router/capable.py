"""What a tier's engine can do, against what the chosen policy needs from it.

A policy's facts name what it needs from an engine (``policies.facts``: continuing a final
message, logprobs, ...); each tier's engine says what it serves (``workers.engines``, handed to
the router as plain sets by the server). A policy that needs what one of its tiers lacks is a
400 naming the tier and the capability when the request pinned it; routed, it is replaced by
the plain policy, and ``ttc.reasons`` says why. So nothing reaches an upstream that it does not
understand, and no request is degraded in silence.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import InvalidRequest
from core.request import Decision
from policies import registry
from policies.params import PolicyParams
from policies.tiers import decision_tiers

Capabilities = Mapping[str, frozenset[str]]


def gap(params: PolicyParams, tier: str, served: Capabilities) -> tuple[str, str] | None:
    """The first (tier, capability) the policy needs and a tier it runs on lacks; None if
    every tier serves it (a tier with no description serves everything)."""
    needs = sorted(registry.facts(params.name).needs)
    for name in decision_tiers(Decision(tier, params)):
        known = served.get(name)
        missing = [need for need in needs if known is not None and need not in known]
        if missing:
            return name, missing[0]
    return None


def capable(
    params: PolicyParams,
    tier: str,
    pinned: str | None,
    served: Capabilities,
    plain: PolicyParams,
    reasons: list[str],
) -> PolicyParams:
    """``params`` if its tiers serve what it needs; else a 400 (pinned) or ``plain``."""
    found = gap(params, tier, served)
    if found is None:
        return params
    lacking, need = found
    if pinned is not None:
        raise InvalidRequest(
            f"the policy '{params.name}' needs '{need}', which the tier '{lacking}' does not "
            "serve (its engine lacks it)",
            param="ttc.policy",
            code="unsupported_by_tier",
        )
    reasons.append(f"tier {lacking} cannot {need}: {params.name} -> {plain.name}")
    return plain
