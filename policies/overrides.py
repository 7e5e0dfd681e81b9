"""What may change a policy's params after the config: the router's budget scaling and a
request's overrides under ``ttc``, both read from the field markers of ``policies.params``.

The router picks (a band's params, a pinned policy, a scale factor); this module validates:
``{"policy": "adaptive_bon", "max_samples": 8}`` picks a policy and overrides its parameters,
and anything unknown, out of range, above a cap or naming a tier is a 400 whose ``param``
names the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from annotated_types import Ge, Le
from pydantic import ValidationError

from core.contract import CONTRACT_FIELDS
from core.errors import InvalidRequest
from policies import registry
from policies.config import PoliciesConfig
from policies.params import (
    Budget,
    Capped,
    P,
    PolicyCaps,
    PolicyParams,
    TierRole,
    error_field,
    marked,
    with_updates,
)

# ``ttc`` keys that are about the request, not the policy's params: the policy it pins, the
# thinking budget (``router.thinking``) that every policy on a reasoning tier honours, and the
# compute contract (``core.contract``), enforced around every policy.
REQUEST_KEYS = frozenset({"policy", "thinking_budget"}) | frozenset(CONTRACT_FIELDS)


def requested_policy(ttc: Mapping[str, Any]) -> str | None:
    """The policy a request pins under ``ttc.policy``, if any; a 400 if it names none known."""
    name = ttc.get("policy")
    if name is None:
        return None
    if not isinstance(name, str) or name not in registry.names():
        allowed = ", ".join(registry.names())
        raise InvalidRequest(
            f"unknown policy {name!r}; expected one of: {allowed}",
            param="ttc.policy",
            code="invalid_policy",
        )
    return name


def with_overrides(
    base: PolicyParams, ttc: Mapping[str, Any], config: PoliciesConfig
) -> PolicyParams:
    """``base`` with the request's overrides applied, validated and capped."""
    overrides = {k: v for k, v in ttc.items() if k not in REQUEST_KEYS}
    if not overrides:
        return base
    if not config.caps.allow_request_override:
        raise InvalidRequest("policy overrides are disabled by config", param="ttc")
    protected = {"name", *marked(type(base), TierRole)}
    for key in overrides:
        if key in protected:
            raise InvalidRequest(f"'{key}' cannot be set per request", param=f"ttc.{key}")
    try:
        _strictly_typed(base, overrides)
        params = with_updates(base, overrides)
    except ValidationError as exc:
        field, message = error_field(exc)
        field = field or "policy"
        raise InvalidRequest(
            f"invalid ttc.{field}: {message}", param=f"ttc.{field}", code="invalid_ttc_param"
        ) from exc
    _check_caps(params, config.caps)
    return params


def for_switched(
    ttc: Mapping[str, Any], params: PolicyParams, reasons: list[str]
) -> dict[str, Any]:
    """``ttc`` without the overrides ``params`` has no field for, when the router (not the
    client) switched the policy: they were meant for the band's policy, and the reasons say
    which were set aside, rather than a 400 for a request that was valid as sent."""
    fields = type(params).model_fields
    kept = {k: v for k, v in ttc.items() if k in REQUEST_KEYS or k in fields}
    if unused := sorted(set(ttc) - set(kept)):
        reasons.append(f"{params.name} has no {', '.join('ttc.' + k for k in unused)}: unused")
    return kept


def _strictly_typed(base: PolicyParams, overrides: Mapping[str, Any]) -> None:
    """Each override of a known field has its field's JSON type, as the OpenAI fields do
    (``"8"``, ``8.0`` or ``true`` for a count is an error, not 8 or 1); ValidationError."""
    validator = type(base).__pydantic_validator__
    probe = base.model_copy()
    for key, value in overrides.items():
        if key in type(base).model_fields:
            validator.validate_assignment(probe, key, value, strict=True)


def _check_caps(params: PolicyParams, caps: PolicyCaps) -> None:
    for field, mark in marked(type(params), Capped).items():
        limit = None if mark.cap is None else getattr(caps, mark.cap)
        value = getattr(params, field)
        if limit is not None and value is not None and value > limit:
            raise InvalidRequest(
                f"ttc.{field}={value} exceeds the configured cap of {limit}",
                param=f"ttc.{field}",
                code="above_cap",
            )


def scale_budget(params: P, factor: float, caps: PolicyCaps) -> P:
    """``params`` with every ``Budget`` field multiplied by ``factor`` (rounded, at least 1).

    Growing never passes the cap (nor shrinks a configured value that already exceeds it); a
    ``Capped(follows=...)`` field follows its budget down so the pair stays consistent.
    """
    if factor == 1.0:
        return params
    update: dict[str, Any] = {}
    for name, mark in marked(type(params), Budget).items():
        value = getattr(params, name)
        low, high = _field_bounds(params, name)
        scaled = max(round(value * factor), 1, int(low))
        if factor > 1.0 and mark.cap is not None:
            scaled = min(scaled, max(getattr(caps, mark.cap), value))
        update[name] = int(min(scaled, high))
    for name, capped in marked(type(params), Capped).items():
        if capped.follows in update:
            update[name] = min(getattr(params, name), update[capped.follows])
    return with_updates(params, update)


def _field_bounds(params: PolicyParams, name: str) -> tuple[float, float]:
    info = type(params).model_fields[name]
    low, high = -math.inf, math.inf
    for item in info.metadata:
        if isinstance(item, Ge):
            low = float(item.ge)  # type: ignore[arg-type]
        elif isinstance(item, Le):
            high = float(item.le)  # type: ignore[arg-type]
    return low, high
