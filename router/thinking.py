"""The thinking plan of a request on a reasoning tier: ``plan_thinking``.

A tier whose model profile thinks gets a budget on every request, the first of:

1. ``ttc.thinking_budget`` when the request sets one (at most the profile's ``max_budget``);
2. ``reasoning_effort: minimal``: the profile's ``minimal`` budget (0 on the presets: thinking
   off, where the family can switch it off);
3. the band's ``thinking_budget`` (``router.bands``: e.g. 0 for easy prompts, a budget for
   medium, a larger one with ``convergence`` for hard), times the effort's ``budget_scale``, so
   ``reasoning_effort`` moves both the band (its difficulty shift) and the budget; at most the
   profile's ``max_budget``;
4. the profile's budget for the request's ``reasoning_effort``, else its ``medium`` budget, so a
   model that never stops thinking is stopped anyway.

A tier with no thinking gets no plan, and a request that sets a thinking budget for it, or for
a raw-prompt completion that has no thinking turn, is a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import InvalidRequest
from core.profile import ModelProfile, Thinking, ThinkingPlan
from core.request import GenRequest

BUDGET_FIELD = "thinking_budget"  # under ``ttc``
DEFAULT_EFFORT = "medium"


@dataclass(frozen=True)
class BandThinking:
    """The thinking the chosen band asks for: its budget (None: the profile decides) and the
    request's ``reasoning_effort`` scale."""

    band: str
    budget: int | None = None
    scale: float = 1.0

    def scaled(self, thinking: Thinking) -> int | None:
        if self.budget is None:
            return None
        return min(round(self.budget * self.scale), thinking.max_budget)


def plan_thinking(
    req: GenRequest,
    profile: ModelProfile | None,
    tier: str,
    reasons: list[str],
    band: BandThinking | None = None,
) -> ThinkingPlan | None:
    requested = req.ttc.get(BUDGET_FIELD)
    thinking = profile.thinking if profile is not None else None
    if thinking is None or req.text_only:
        if requested is not None:
            why = (
                "a text completion has no thinking"
                if req.text_only
                else (f"the tier '{tier}' has no reasoning profile")
            )
            raise InvalidRequest(f"ttc.{BUDGET_FIELD}: {why}", param=f"ttc.{BUDGET_FIELD}")
        return None
    effort = req.reasoning_effort
    by_effort = _for_effort(thinking, effort or DEFAULT_EFFORT)  # an unknown effort: a 400
    banded = band.scaled(thinking) if band is not None else None
    if requested is not None:
        plan = ThinkingPlan(thinking, _explicit(requested, thinking), f"ttc.{BUDGET_FIELD}")
    elif effort == "minimal" or (effort is not None and banded is None):
        plan = ThinkingPlan(thinking, by_effort, "reasoning_effort")
    elif banded is not None and band is not None:
        plan = ThinkingPlan(thinking, banded, f"band {band.band}")
    else:
        plan = ThinkingPlan(thinking, by_effort, "default")
    mechanism = "forced by the gateway" if plan.forced else "held by the worker"
    reasons.append(f"thinking budget {plan.budget} from {plan.source} ({mechanism})")
    return plan


def _explicit(value: object, thinking: Thinking) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            f"ttc.{BUDGET_FIELD} must be an integer number of tokens", param=f"ttc.{BUDGET_FIELD}"
        )
    if not 0 <= value <= thinking.max_budget:
        raise InvalidRequest(
            f"ttc.{BUDGET_FIELD}={value} is outside 0..{thinking.max_budget} for this tier",
            param=f"ttc.{BUDGET_FIELD}",
            code="above_cap" if value > 0 else "invalid_value",
        )
    return value


def _for_effort(thinking: Thinking, effort: str) -> int:
    budgets: Mapping[str, int] = thinking.budgets
    if effort not in budgets:
        raise InvalidRequest(
            f"reasoning_effort {effort!r} has no thinking budget on this tier; expected one "
            f"of: {', '.join(budgets)}",
            param="reasoning_effort",
        )
    return budgets[effort]
