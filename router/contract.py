"""Planning within a request's compute contract (``core.contract``).

The contract is enforced while the request runs, whatever the plan; planning within it only
avoids drawing what could never be paid for: no difficulty probe when the contract holds fewer
than ``PROBE_PROMPTS`` prompts, and no sample budget (a ``Budget`` capped by ``max_samples``)
above the samples the contract affords, each paying its prompt and a typical answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from core.contract import prompt_estimate
from core.request import GenRequest
from policies.params import Budget, Capped, P, marked, with_updates

# 128: a short answer's tokens; the request's own max_tokens replaces it.
ANSWER_TOKENS = 128
# 8: a probe costs one prompt; below eight prompts' worth of contract, samples need it more.
PROBE_PROMPTS = 8


def contract_tokens(req: GenRequest, costs: Mapping[str, float], tier: str) -> int | None:
    """The most tokens the request's contract allows on ``tier`` (None: unbounded)."""
    contract = req.contract
    bounds = [contract.max_total_tokens] if contract.max_total_tokens is not None else []
    price = costs.get(tier, 0.0)
    if contract.max_cost is not None and price > 0:
        bounds.append(math.floor(contract.max_cost * 1000 / price))
    return min(bounds) if bounds else None


def probe_affordable(req: GenRequest, tokens: int | None) -> bool:
    return tokens is None or tokens >= PROBE_PROMPTS * prompt_estimate(req.body())


def affordable_samples(req: GenRequest, tokens: int) -> int:
    per_sample = prompt_estimate(req.body()) + (req.max_tokens or ANSWER_TOKENS)
    return max(1, tokens // per_sample)


def samples_within(params: P, req: GenRequest, tokens: int | None, reasons: list[str]) -> P:
    """``params`` with every sample budget lowered to what ``tokens`` affords."""
    if tokens is None:
        return params
    most = affordable_samples(req, tokens)
    update: dict[str, Any] = {
        name: most
        for name, mark in marked(type(params), Budget).items()
        if mark.cap == "max_samples" and getattr(params, name) > most
    }
    if not update:
        return params
    for name, capped in marked(type(params), Capped).items():
        if capped.follows in update:
            update[name] = min(getattr(params, name), update[capped.follows])
    reasons.append(f"compute contract of {tokens} tokens: at most {most} samples")
    return with_updates(params, update)
