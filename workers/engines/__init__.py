"""The engines a tier can name (``tiers.<name>.engine``), one module each, and the questions
the rest of the gateway asks about them.

``engine_for(tier)`` is the tier's ``Engine``; ``serves(tier, capability)`` and
``capabilities(tiers)`` answer what a tier's upstream can do, in the capability names of
``workers.engines.base`` (the router matches policy needs against them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from workers.engines import llamacpp, openai, sglang, vllm
from workers.engines.base import CAPABILITIES, Engine, LoadGauges

__all__ = [
    "CAPABILITIES",
    "DEFAULT_ENGINE",
    "ENGINES",
    "Engine",
    "LoadGauges",
    "capabilities",
    "engine_for",
    "serves",
]

ENGINES: dict[str, Engine] = {
    module.ENGINE.name: module.ENGINE for module in (vllm, sglang, llamacpp, openai)
}
DEFAULT_ENGINE = vllm.ENGINE.name


class EngineNamed(Protocol):
    """What names an engine: a ``workers.config.TierConfig``."""

    @property
    def engine(self) -> str: ...


def engine_for(tier: EngineNamed) -> Engine:
    return ENGINES[tier.engine]


def serves(tier: EngineNamed, capability: str) -> bool:
    """Does ``tier``'s engine serve ``capability`` (a name in ``CAPABILITIES``)?"""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}")
    return engine_for(tier).can(capability)


def capabilities(tiers: Mapping[str, EngineNamed]) -> dict[str, frozenset[str]]:
    """What each tier's engine serves, for the router (which never imports ``workers``)."""
    return {name: engine_for(tier).serves for name, tier in tiers.items()}
