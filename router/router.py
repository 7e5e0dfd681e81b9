"""``Router``: turn a request into a ``Decision`` (tier, policy, parameters) before generating."""

from __future__ import annotations

from policies.base import Decision, GenRequest
from policies.errors import ModelNotFound
from policies.params import PoliciesConfig, PolicyParams
from router import overrides
from router.config import RouterConfig

AUTO_MODEL = "auto"


class Router:
    def __init__(self, config: RouterConfig, policies: PoliciesConfig, tiers: tuple[str, ...]):
        self._config = config
        self._policies = policies
        self._tiers = tiers

    @property
    def default_tier(self) -> str:
        return self._config.default_tier or self._tiers[0]

    def decide(self, req: GenRequest) -> Decision:
        reasons: list[str] = []
        tier = self._tier(req, reasons)
        name = overrides.requested_policy(req.ttc)
        if name is not None:
            reasons.append(f"policy pinned by request: {name}")
        else:
            name = self._policies.default
        params = overrides.apply(self._defaults(name), req.ttc, self._policies)
        return Decision(tier=tier, policy=params, reasons=tuple(reasons))

    def _tier(self, req: GenRequest, reasons: list[str]) -> str:
        if req.model == AUTO_MODEL:
            reasons.append(f"default tier: {self.default_tier}")
            return self.default_tier
        if req.model not in self._tiers:
            raise ModelNotFound(f"The model '{req.model}' does not exist", param="model")
        reasons.append(f"tier pinned by model: {req.model}")
        return req.model

    def _defaults(self, name: str) -> PolicyParams:
        params: PolicyParams = getattr(self._policies, name)
        return params
