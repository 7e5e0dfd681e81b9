"""A request's compute contract from its ``ttc`` fields and its key's terms.

``validated`` checks what the client sent (``request_options`` calls it while parsing):
``ttc.max_total_tokens`` and ``ttc.deadline_ms`` are positive integers, ``ttc.max_cost`` a
positive number, each below a sanity bound; anything else is a 400 naming the field.
``resolved`` applies the key's terms (``auth.keys[].contract``, else ``limits.contract``): a
default for a field the request left out, and a ceiling no request may pass: above it, a 400,
or the ceiling itself when the terms say ``over_ceiling: clamp``.

``reserve_budget`` runs once the request is routed, on a key with a daily budget: it reserves
the request's worst case, which is what the router's probe already spent plus the policy's
bound (``policies.worst_case``), or the contract's own bound when that is smaller. When the
budget left cannot hold it, ``over_budget: reject`` is a 429; ``over_budget: shrink`` takes
what is left if that covers the prompt and ``MIN_SAMPLE_TOKENS`` of answer, and makes it the
request's ``max_total_tokens``, which the metered backend then enforces.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from core.contract import (
    CONTRACT_FIELDS,
    MIN_SAMPLE_TOKENS,
    ComputeContract,
    ContractMeter,
    prompt_estimate,
)
from core.errors import InvalidRequest
from core.metering import MeteredBackend
from policies.worst_case import worst_case_tokens
from server.auth import Guard
from server.settlement import Settlement
from state.config import ContractTerms

# Sanity bounds, far above any real request: 10^9 tokens, 10^9 cost units, one hour.
UPPER_BOUNDS: dict[str, float] = {
    "max_total_tokens": 1_000_000_000,
    "max_cost": 1e9,
    "deadline_ms": 3_600_000,
}
_CEILINGS = {
    "max_total_tokens": "ceiling_total_tokens",
    "max_cost": "ceiling_cost",
    "deadline_ms": "ceiling_deadline_ms",
}


def validated(ttc: Mapping[str, Any]) -> dict[str, Any]:
    """The contract fields of ``ttc``, checked; a 400 naming the first bad one."""
    out: dict[str, Any] = {}
    for name in CONTRACT_FIELDS:
        value = ttc.get(name)
        if value is not None:
            out[name] = _checked(name, value)
    return out


def _checked(name: str, value: Any) -> int | float:
    integral = name != "max_cost"
    wrong = isinstance(value, bool) or not isinstance(value, int if integral else (int, float))
    if wrong:
        what = "an integer" if integral else "a number"
        raise InvalidRequest(f"ttc.{name} must be {what}", param=f"ttc.{name}")
    number: float = value
    bound = UPPER_BOUNDS[name]
    if not math.isfinite(number) or number <= 0 or number > bound:
        raise InvalidRequest(
            f"ttc.{name} must be above 0 and at most {bound:g}; got {value}", param=f"ttc.{name}"
        )
    return int(value) if integral else float(value)


def requested(ttc: Mapping[str, Any]) -> ComputeContract:
    fields = validated(ttc)
    return ComputeContract(**fields)


def resolved(ask: ComputeContract, terms: ContractTerms) -> ComputeContract:
    """``ask`` with the key's defaults filled in and its ceilings enforced."""
    values: dict[str, Any] = {}
    for name in CONTRACT_FIELDS:
        value = getattr(ask, name)
        if value is None:
            value = getattr(terms, name)
        values[name] = _within_ceiling(name, value, getattr(terms, _CEILINGS[name]), terms)
    return ComputeContract(**values)


def _within_ceiling(name: str, value: Any, ceiling: Any, terms: ContractTerms) -> Any:
    if ceiling is None:
        return value
    if value is None or terms.over_ceiling == "clamp":
        return ceiling if value is None or value > ceiling else value
    if value > ceiling:
        raise InvalidRequest(
            f"ttc.{name}={value} is above this API key's ceiling of {ceiling:g}",
            param=f"ttc.{name}",
            code="above_ceiling",
        )
    return value


async def reserve_budget(guard: Guard, life: Settlement, costs: Mapping[str, float]) -> None:
    """Reserve the routed request's worst case against its key's daily budget (see above);
    ``life.reservation`` holds it until the settlement releases it."""
    caller, req, meter, decision = life.caller, life.req, life.meter, life.decision
    if caller is None or caller.quota.tokens_per_day is None:
        return
    assert req is not None and meter is not None and decision is not None
    spent = meter.spent.total_tokens  # the router's probe
    want = spent + worst_case_tokens(req, decision, guard.context_tokens)
    bound = req.contract.worst_case_tokens(costs)
    if bound is not None:
        want = min(want, max(bound, spent))
    least = want
    if caller.quota.contract.over_budget == "shrink":
        least = min(want, spent + prompt_estimate(req.body()) + MIN_SAMPLE_TOKENS)
    deadline = req.deadline if req.deadline is not None else life.started
    ttl_s = max(deadline - time.monotonic(), 0.0) + guard.reservation_margin_s
    life.reservation = await guard.reserve(caller, want, least, ttl_s)
    if life.reservation is not None and life.reservation.shrunk:
        shrink(meter, life.reservation.tokens, costs, life.started)
        # The request knows its contract too: a policy that plans by it (cascade holds its
        # large stage's answer under a contract) must see the shrunk one.
        terms = replace(req.contract, max_total_tokens=life.reservation.tokens)
        life.req = replace(req, contract=terms)


def shrink(meter: MeteredBackend, tokens: int, costs: Mapping[str, float], started: float) -> None:
    """Make ``tokens`` the request's ``max_total_tokens`` (what it spent so far included)."""
    if meter.contract is None:
        contract = ComputeContract(max_total_tokens=tokens)
        used = meter.spent.total_tokens
        meter.contract = ContractMeter(contract, costs, started=started, used_tokens=used)
    else:
        terms = meter.contract.contract
        meter.contract.contract = replace(terms, max_total_tokens=tokens)
