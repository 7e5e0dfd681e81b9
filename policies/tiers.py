"""Which tiers a policy runs on, when its params name tiers (``TierRole`` fields).

A policy that needs two tiers (``speculative``: drafter and judge; ``cascade``: small and large)
takes them from the config: a tier its ``policies.<name>`` section (or a band's params) names
explicitly, else the config's cost order (``cost_per_1k_tokens``): the cheapest tier for the
``cheapest`` role, the dearest for ``dearest``; equal costs keep the order of ``tiers:``, first
cheapest. With one tier both roles are that tier: the policy runs on it and the decision's
reasons say so. A named tier the config does not define is a 400 naming it, never a 404 about
a model the client did not ask for (the config check refuses one at start-up already).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.errors import InvalidRequest
from core.request import Decision
from policies.params import P, PolicyParams, TierRole, marked, with_updates


@dataclass(frozen=True)
class TierLadder:
    """The configured tiers, cheapest first."""

    tiers: tuple[str, ...]

    @classmethod
    def by_cost(cls, costs: Mapping[str, float]) -> TierLadder:
        """From ``{tier: cost_per_1k_tokens}`` in config order; ties keep that order."""
        order = sorted(enumerate(costs), key=lambda item: (costs[item[1]], item[0]))
        return cls(tuple(name for _, name in order))

    @classmethod
    def in_order(cls, tiers: Sequence[str]) -> TierLadder:
        """Tiers of unknown cost: the first is the cheapest, the last the dearest."""
        return cls(tuple(tiers))

    def pick(self, role: TierRole) -> str:
        return self.tiers[0] if role.role == "cheapest" else self.tiers[-1]


def unknown_tiers(params: PolicyParams, tiers: Sequence[str]) -> list[str]:
    """The ``TierRole`` fields of ``params`` naming a tier not in ``tiers``, as 'field: tier'."""
    named = ((field, getattr(params, field)) for field in marked(type(params), TierRole))
    return [
        f"{field}: unknown tier {tier!r}" for field, tier in named if tier and tier not in tiers
    ]


def with_tiers(params: P, ladder: TierLadder) -> tuple[P, list[str]]:
    """``params`` with every unset ``TierRole`` field resolved, and the reasons to report."""
    roles = marked(type(params), TierRole)
    if not roles:
        return params, []
    if problems := unknown_tiers(params, ladder.tiers):
        raise InvalidRequest(
            f"{params.name} needs a tier the config does not define ({problems[0]}); "
            f"configured tiers: {', '.join(ladder.tiers)}",
            param="ttc.policy",
            code="missing_tier",
        )
    update = {
        field: ladder.pick(role) for field, role in roles.items() if not getattr(params, field)
    }
    resolved = with_updates(params, update) if update else params
    chosen = {field: getattr(resolved, field) for field in roles}
    return resolved, [_reason(resolved.name, chosen, update)]


def _reason(policy: str, chosen: Mapping[str, str], derived: Mapping[str, str]) -> str:
    if len(set(chosen.values())) == 1:
        (tier,) = set(chosen.values())
        return f"{policy}: one tier ({tier}) plays every role ({', '.join(chosen)})"
    how = "by cost" if derived else "from config"
    return f"{policy} tiers {how}: " + ", ".join(f"{f}={t}" for f, t in chosen.items())


def resolved_tier(params: PolicyParams, field: str) -> str:
    """The tier a ``TierRole`` field names; the router resolves unset ones (``with_tiers``)."""
    tier = getattr(params, field)
    if not isinstance(tier, str) or not tier:
        raise ValueError(f"{params.name}.{field} is unresolved: use policies.tiers.with_tiers")
    return tier


def decision_tiers(decision: Decision) -> list[str]:
    """Every tier a decision may call: its own, then those its policy's roles name (cascade's
    large tier, speculative's judge)."""
    params = decision.params
    if not isinstance(params, PolicyParams):
        return [decision.tier]
    named = (getattr(params, field) for field in marked(type(params), TierRole))
    return list(dict.fromkeys([decision.tier, *(tier for tier in named if tier)]))
