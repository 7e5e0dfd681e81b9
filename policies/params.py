"""What every policy's parameters share, and the one table of their budgets, caps and tiers.

Each policy module declares its own params model: a ``PolicyParams`` subclass whose ``name`` is
``Literal["<policy>"]`` (see ``policies.registry`` for the one registration it needs). What a
field means to the router and to a request is declared on the field itself, so there is no
second table to keep in step with the models:

- ``Budget(cap)``: a compute budget (samples, probes, steps, chain tokens).
  ``reasoning_effort``, load shedding and the budget controller scale it
  (``policies.overrides.scale_budget``); growing stops at ``caps.<cap>`` (``None``: only the
  field's own bound). A request may not set it above ``caps.<cap>`` either.
- ``Capped(cap, follows=...)``: a request may not set it above ``caps.<cap>``; when scaling
  lowers the field named by ``follows``, this one follows it down (``min_samples``).
- ``TierRole(role)``: names a tier; the config may set it, a request never. ``None`` takes the
  tier from the config's cost order (``policies.tiers``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError


@dataclass(frozen=True)
class Capped:
    """A request may not set this field above ``PolicyCaps.<cap>`` (``None``: no cap)."""

    cap: str | None
    follows: str | None = None


@dataclass(frozen=True)
class Budget(Capped):
    """A compute budget: scaled by effort, load and the controller; capped like ``Capped``."""


@dataclass(frozen=True)
class TierRole:
    """A tier this policy runs on: the cheapest or the dearest tier unless the config names one."""

    role: Literal["cheapest", "dearest"]


class PolicyParams(BaseModel):
    """Base of every policy's params; ``name`` (a ``Literal`` in each subclass) keys the
    registry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str

    @classmethod
    def policy_name(cls) -> str:
        default = cls.model_fields["name"].default
        if not isinstance(default, str):
            raise TypeError(f"{cls.__name__}.name needs a Literal default (the policy's name)")
        return default


P = TypeVar("P", bound=PolicyParams)
# How a policy reads an answer out of a text (``policies.answers.extract_answer``).
AnswerMode = Literal["auto", "boxed", "answer_is", "number", "choice", "text"]
M = TypeVar("M")


class PolicyCaps(BaseModel):
    """Upper bounds no request may exceed, whatever it asks under ``ttc``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_samples: int = Field(16, ge=1, le=256)
    max_probes: int = Field(64, ge=1, le=1024)
    max_steps: int = Field(32, ge=1, le=512)
    allow_request_override: bool = True


def marked(model: type[PolicyParams], kind: type[M]) -> Mapping[str, M]:
    """Field name -> its ``kind`` marker (``Budget``, ``Capped``, ``TierRole``) in ``model``."""
    return {name: mark for name, mark in _markers(model) if isinstance(mark, kind)}


@functools.cache
def _markers(model: type[PolicyParams]) -> tuple[tuple[str, object], ...]:
    return tuple(
        (name, item) for name, info in model.model_fields.items() for item in info.metadata
    )


def with_updates(params: P, update: Mapping[str, Any]) -> P:
    """``params`` with ``update`` applied, validated as a whole (ValidationError if bad)."""
    return type(params).model_validate({**params.model_dump(), **update})


def error_field(exc: ValidationError) -> tuple[str, str]:
    """(dotted field inside the params, message) of the first error."""
    err = exc.errors()[0]
    return ".".join(str(p) for p in err["loc"]), err["msg"]
