"""Policy parameters: a pydantic union keyed on the policy name.

Config gives each policy its defaults; a request may override some of them under ``ttc``,
within the caps of ``PolicyCaps``. Adding a policy means one model here and one entry in
``policies.registry``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SingleParams(_Params):
    """One sample, streamed straight through."""

    name: Literal["single"] = "single"


class AdaptiveBonParams(_Params):
    """Adaptive best-of-N: sample in rounds, stop once the leading answer is settled.

    Defaults were tuned on bench/data/facts-dev.jsonl (never on facts-test) for the product's
    target: best-of-8 accuracy at no more than a third of its tokens. A confident greedy first
    sample answers alone; otherwise samples vote, with the Beta rule at 0.9 and at most 16.
    ``min_samples == max_samples`` with the gate off is plain fixed best-of-N.
    """

    name: Literal["adaptive_bon"] = "adaptive_bon"
    min_samples: int = Field(2, ge=1, le=256)
    step: int = Field(2, ge=1, le=64)
    max_samples: int = Field(16, ge=1, le=256)
    stopping: Literal["beta", "window"] = "beta"
    confidence: float = Field(0.9, gt=0.5, lt=1.0)
    window: int = Field(5, ge=2, le=64)
    answer_mode: Literal["auto", "boxed", "answer_is", "number", "choice", "text"] = "auto"
    weighted: bool = False
    # Gate on the first sample: when its answer tokens' geometric-mean probability clears this,
    # one sample is enough (DeepConf). None turns the gate off. 0.75 (with at most 16 votes at
    # 0.9): on facts-dev, best-of-8's accuracy at about half its tokens; 0.6 with at most 6
    # spent a fifth of them but lost 7-10 points.
    single_sample_confidence: float | None = Field(0.75, gt=0.0, le=1.0)
    # The gated first sample is greedy (temperature 0) unless the client set a temperature:
    # the mode is the best single guess, and later samples vote around it.
    greedy_first: bool = True
    # How strongly the router's difficulty moves the required confidence (0 = not at all).
    difficulty_prior: float = Field(0.5, ge=0.0, le=1.0)
    temperature: float = Field(0.7, ge=0.0, le=2.0)


class ConvergenceParams(_Params):
    """One chain of thought, stopped once probes of its answer agree."""

    name: Literal["convergence"] = "convergence"
    probe_every: int = Field(32, ge=4, le=4096)
    agree: int = Field(2, ge=1, le=16)
    probe_max_tokens: int = Field(20, ge=1, le=256)
    probe_suffix: str = "\n\n... I now know the final answer. Final answer:"
    # Only a probe's first line is read: stopping it there keeps probes a few tokens long
    # (12 hard-dev chain positions: 13.6 completion tokens per probe without it, 8.8 with it).
    probe_stop: list[str] = Field(default_factory=lambda: ["\n"], max_length=4)
    max_probes: int = Field(32, ge=1, le=512)
    answer_mode: Literal["auto", "boxed", "answer_is", "number", "choice", "text"] = "auto"
    # 1: probes run one at a time, so they never slow the chain much on a shared CPU worker;
    # 2 lets a GPU worker check the next position while the previous probe still decodes.
    max_concurrent_probes: int = Field(1, ge=1, le=4)
    # The budget tokens_saved is measured against when the request sets no max_tokens (not sent
    # upstream: a long prompt plus a default max_tokens could exceed the model's context).
    default_budget: int = Field(1024, ge=16, le=131072)


class SpeculativeParams(_Params):
    """Speculative reasoning: the small tier drafts steps, the large tier judges them."""

    name: Literal["speculative"] = "speculative"
    draft_tier: str = "small"
    judge_tier: str = "large"
    max_step_tokens: int = Field(64, ge=4, le=2048)
    accept_threshold: float = Field(7.0, ge=0.0, le=9.0)
    score: Literal["expected", "top"] = "expected"
    max_steps: int = Field(24, ge=1, le=256)


class CascadeParams(_Params):
    """Try the small tier cheaply; escalate to the large tier when it is unsure."""

    name: Literal["cascade"] = "cascade"
    small_tier: str = "small"
    large_tier: str = "large"
    small_max_samples: int = Field(4, ge=1, le=64)
    escalate_below: float = Field(0.8, ge=0.0, le=1.0)
    large_policy: Literal["single", "adaptive_bon"] = "adaptive_bon"


PolicyParams = Annotated[
    SingleParams | AdaptiveBonParams | ConvergenceParams | SpeculativeParams | CascadeParams,
    Field(discriminator="name"),
]

POLICY_NAMES: tuple[str, ...] = ("single", "adaptive_bon", "convergence", "speculative", "cascade")

_ADAPTER: TypeAdapter[PolicyParams] = TypeAdapter(PolicyParams)


def validate_params(data: Mapping[str, Any]) -> PolicyParams:
    """The params model for ``data``, whose ``name`` picks the policy; ValidationError if bad."""
    return _ADAPTER.validate_python(data)


def with_updates(params: PolicyParams, update: Mapping[str, Any]) -> PolicyParams:
    """``params`` with ``update`` applied, validated as a whole (ValidationError if bad)."""
    return validate_params({**params.model_dump(), **update})


def error_field(exc: ValidationError) -> tuple[str, str]:
    """(dotted field inside the params, message) of the first error; the union tag is dropped."""
    err = exc.errors()[0]
    return ".".join(str(p) for p in err["loc"][1:]), err["msg"]


class PolicyCaps(_Params):
    """Upper bounds no request may exceed, whatever it asks under ``ttc``."""

    max_samples: int = Field(16, ge=1, le=256)
    max_probes: int = Field(64, ge=1, le=1024)
    max_steps: int = Field(32, ge=1, le=512)
    allow_request_override: bool = True


class PoliciesConfig(_Params):
    """Defaults per policy (the ``policies:`` section of the config)."""

    default: str = Field("single", description="policy used when the router has no opinion")
    single: SingleParams = SingleParams()
    adaptive_bon: AdaptiveBonParams = AdaptiveBonParams()
    convergence: ConvergenceParams = ConvergenceParams()
    speculative: SpeculativeParams = SpeculativeParams()
    cascade: CascadeParams = CascadeParams()
    caps: PolicyCaps = PolicyCaps()
