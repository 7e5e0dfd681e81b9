"""The ``policies:`` section of the config: the default policy, the caps, and each policy's
defaults under its name (``policies.adaptive_bon: {...}``).

The per-policy keys are whatever ``policies.registry`` registers, each validated by its own
params model; a key naming no registered policy is an error. A policy missing from the file
takes its model's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny, model_validator

from policies import registry
from policies.params import P, PolicyCaps, PolicyParams
from policies.tiers import unknown_tiers


def _as_params(data: Any) -> Any:
    return registry.validate_params(data) if isinstance(data, Mapping) else data


class PoliciesConfig(BaseModel):
    """Defaults per policy; read them with ``of(AdaptiveBonParams)`` or ``named("single")``."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[
        str, Annotated[SerializeAsAny[PolicyParams], BeforeValidator(_as_params)]
    ] = Field(init=False)

    default: str = Field("single", description="policy used when the router has no opinion")
    caps: PolicyCaps = PolicyCaps()

    @model_validator(mode="before")
    @classmethod
    def _every_policy(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        models = registry.registrations()
        unknown = sorted(set(data) - set(cls.model_fields) - set(models))
        if unknown:
            expected = ", ".join(models)
            raise ValueError(f"unknown policy {unknown[0]!r}; expected one of: {expected}")
        out = dict(data)
        for name, registration in models.items():
            given = out.get(name, {})
            if isinstance(given, Mapping):
                out[name] = {**given, "name": name}
            elif not isinstance(given, registration.params):
                raise ValueError(f"{name}: expected {registration.params.__name__}")
        return out

    def unknown_tiers(self, tiers: Sequence[str]) -> list[str]:
        """Tiers the policies' sections name that ``tiers`` does not define."""
        return [
            f"policies.{name}.{problem}"
            for name, params in (self.__pydantic_extra__ or {}).items()
            for problem in unknown_tiers(params, tiers)
        ]

    def named(self, name: str) -> PolicyParams:
        """The configured params of policy ``name`` (KeyError if none is registered so)."""
        params: PolicyParams = (self.__pydantic_extra__ or {})[name]
        return params

    def of(self, model: type[P]) -> P:
        """The configured params of the policy whose params model is ``model``."""
        params = self.named(model.policy_name())
        if not isinstance(params, model):
            raise TypeError(f"policies.{params.name} is not a {model.__name__}")
        return params
