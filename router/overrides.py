"""Per-request policy overrides under ``ttc``, validated against the config's caps.

``{"policy": "adaptive_bon", "max_samples": 8}`` picks a policy and overrides its parameters;
anything unknown, out of range or above a cap is a 400 whose ``param`` names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from core.errors import InvalidRequest
from policies.params import POLICY_NAMES, PoliciesConfig, PolicyParams, error_field, with_updates

# Fields a request may not set: they choose tiers, which model=... and the router govern.
_PROTECTED = frozenset({"draft_tier", "judge_tier", "small_tier", "large_tier", "name"})

_CAPPED = {
    "max_samples": "max_samples",
    "min_samples": "max_samples",
    "max_probes": "max_probes",
    "max_steps": "max_steps",
}


def requested_policy(ttc: Mapping[str, Any]) -> str | None:
    name = ttc.get("policy")
    if name is None:
        return None
    if not isinstance(name, str) or name not in POLICY_NAMES:
        allowed = ", ".join(POLICY_NAMES)
        raise InvalidRequest(
            f"unknown policy {name!r}; expected one of: {allowed}",
            param="ttc.policy",
            code="invalid_policy",
        )
    return name


def apply(base: PolicyParams, ttc: Mapping[str, Any], config: PoliciesConfig) -> PolicyParams:
    """``base`` with the request's overrides applied, validated and capped."""
    overrides = {k: v for k, v in ttc.items() if k != "policy"}
    if not overrides:
        return base
    if not config.caps.allow_request_override:
        raise InvalidRequest("policy overrides are disabled by config", param="ttc")
    for key in overrides:
        if key in _PROTECTED:
            raise InvalidRequest(f"'{key}' cannot be set per request", param=f"ttc.{key}")
    try:
        params = with_updates(base, overrides)
    except ValidationError as exc:
        field, message = error_field(exc)
        field = field or "policy"
        raise InvalidRequest(
            f"invalid ttc.{field}: {message}", param=f"ttc.{field}", code="invalid_ttc_param"
        ) from exc
    _check_caps(params, config)
    return params


def _check_caps(params: PolicyParams, config: PoliciesConfig) -> None:
    caps = config.caps.model_dump()
    for field, cap_name in _CAPPED.items():
        value = getattr(params, field, None)
        if value is not None and value > caps[cap_name]:
            raise InvalidRequest(
                f"ttc.{field}={value} exceeds the configured cap of {caps[cap_name]}",
                param=f"ttc.{field}",
                code="above_cap",
            )
