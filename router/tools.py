"""Tool requests: which tier may serve them and which policy they get.

A request that sends ``tools`` (with a ``tool_choice`` other than ``none``) needs a tier whose
model profile names a tool-call parser (``core.profile.ModelProfile.calls_tools``). A tier
named by ``model`` that cannot call tools is refused with a 400 naming it, before any worker
call; with ``model: auto`` a band's tier that cannot is replaced by the preferred (or first)
tier that can, and the decision's reasons say so. Tools otherwise force the plain policy
(``single``), except a policy whose facts say ``tool_votes`` (``adaptive_bon``) when the request
pins it or ``router.tools.policy`` picks it: its samples then vote on the calls
(``policies.tool_votes``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import InvalidRequest
from core.profile import ModelProfile
from core.request import GenRequest
from policies import overrides, registry
from policies.config import PoliciesConfig
from policies.params import PolicyParams


class ToolsConfig(BaseModel):
    """``router.tools``: where and how ``model: auto`` serves requests that send tools."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tier: str | None = Field(
        None, description="tier for tool requests when the band's tier cannot call tools"
    )
    policy: str = Field(
        "single",
        description="policy of tool requests: the plain one, or one whose samples vote on the "
        "calls (adaptive_bon)",
    )

    @field_validator("policy")
    @classmethod
    def _can_serve_tools(cls, name: str) -> str:
        facts = registry.facts(name)  # LookupError names the known policies
        if not (facts.plain or facts.tool_votes):
            raise ValueError(f"the policy '{name}' cannot vote on tool calls")
        return name


def wants_tools(req: GenRequest) -> bool:
    """Whether the request may get tool calls back (tools sent, ``tool_choice`` not none)."""
    return bool(req.passthrough.get("tools")) and req.passthrough.get("tool_choice") != "none"


@dataclass(frozen=True)
class ToolTiers:
    """The tiers' model profiles, in config order; an empty mapping checks nothing."""

    profiles: Mapping[str, ModelProfile]
    preferred: str | None = None

    @property
    def capable(self) -> tuple[str, ...]:
        return tuple(name for name, p in self.profiles.items() if p.calls_tools)

    def can_call(self, tier: str) -> bool:
        profile = self.profiles.get(tier)
        return profile is None or profile.calls_tools

    def tier_for(self, req: GenRequest, tier: str, pinned: bool, reasons: list[str]) -> str:
        """The tier that serves ``req``: ``tier`` itself, or (``model: auto``) one that can
        call tools; raises ``InvalidRequest`` when the tier is pinned or none can."""
        if not wants_tools(req) or self.can_call(tier):
            return tier
        alternatives = self._alternatives()
        if pinned or not alternatives:
            raise InvalidRequest(
                _refusal(tier, self.profiles[tier], alternatives),
                param="tools",
                code="tools_not_supported",
            )
        chosen = alternatives[0]
        reasons.append(f"tools: tier {tier} cannot call tools; routed to {chosen}, which can")
        return chosen

    def _alternatives(self) -> tuple[str, ...]:
        capable = self.capable
        if self.preferred in capable:
            return (self.preferred, *(t for t in capable if t != self.preferred))
        return capable


def _refusal(tier: str, profile: ModelProfile, alternatives: Sequence[str]) -> str:
    where = (
        f"send tools to a tier that can: {', '.join(alternatives)}"
        if alternatives
        else "no configured tier can call tools"
    )
    return (
        f"the tier '{tier}' cannot call tools (model profile '{profile.name}' has no tool-call "
        f"parser); {where}"
    )


def tool_policy(req: GenRequest, pinned: str | None, config: ToolsConfig) -> str:
    """The policy a tools request runs: one whose samples vote on tool calls only when pinned
    or configured, else the plain one (structured output, ``response_format``, always gets the
    plain one)."""
    plain = registry.plain_name()
    if req.passthrough.get("response_format"):
        return plain
    wanted = pinned if pinned is not None else config.policy
    return wanted if registry.facts(wanted).tool_votes else plain


def tool_params(
    req: GenRequest,
    params: PolicyParams,
    pinned: str | None,
    config: ToolsConfig,
    policies: PoliciesConfig,
    reasons: list[str],
) -> PolicyParams:
    """The parameters a tools (or structured output) request runs with: the plain policy's, or
    a tool-voting policy's (see ``tool_policy``)."""
    name = tool_policy(req, pinned, config)
    if registry.facts(name).tool_votes:
        reasons.append(f"tools: {name} samples vote on the calls")
        voting = params if params.name == name else policies.named(name)
        return overrides.with_overrides(voting, req.ttc, policies)
    if params.name != name:
        reasons.append(f"tools/response_format need one plain sample; {params.name} skipped")
    return policies.named(name)
