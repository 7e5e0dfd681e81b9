"""The most tokens a routed request's policy can spend, known before it runs.

A key with a daily budget reserves this worst case before a request is dispatched
(``state.reservations``). A bound counts every token of every sub-call as the worker counts
them, prompt and completion: samples and rounds, probes, judge calls, drafts, rewritten steps,
escalations. It holds when prompts are priced no lower than the truth: the request's own prompt
and every prompt built from it are priced with ``core.contract.prompt_estimate`` (conservative
by design), and a chain's text read back as a prompt (a probe's, a draft's, the judge's) at the
tokens it was generated in.

A sample without ``max_tokens`` is bounded by its tier's context: vLLM stops it when prompt
plus completion fill ``max_model_len``. The caller passes that as ``context_tokens``
(``limits.context_tokens``); it is the only real bound such a request has.

Each policy names its bound on its registration (``Facts.worst_case``); the arithmetic the
bounds share (``Shape``) and the bounds of the built-in policies live here. The params are the
routed ones (``Decision.params``: after the request's overrides, effort and load scaling, and
caps).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.contract import BYTES_PER_TOKEN, MESSAGE_TOKENS, prompt_estimate
from core.profile import ThinkingPlan
from core.request import Decision, GenRequest
from policies import registry
from policies.judge import judge_body
from policies.thinking import token_limits

if TYPE_CHECKING:  # the policy modules import this one for their bounds
    from policies.adaptive_bon import AdaptiveBonParams
    from policies.convergence import ConvergenceParams
    from policies.single import SingleParams
    from policies.speculative import SpeculativeParams

# 2: the blank line that joins two settled steps of a speculative chain, as prompt tokens.
SEPARATOR_TOKENS = 2


def text_tokens(text: str) -> int:
    """A fixed text (a suffix, a delimiter) priced as ``prompt_estimate`` prices it: its JSON
    form, at ``BYTES_PER_TOKEN``."""
    return -(-len(json.dumps(text, ensure_ascii=False).encode()) // BYTES_PER_TOKEN)


# One more message in a prompt (the assistant message a probe, a draft or a continuation
# extends), priced as ``prompt_estimate`` prices it: its role markers and its JSON wrapping.
MESSAGE_OVERHEAD = MESSAGE_TOKENS + text_tokens('{"role": "assistant", "content": }, ')


@dataclass(frozen=True)
class Shape:
    """What bounds one request's sub-calls: its prompt, its ``max_tokens``, the context."""

    req: GenRequest
    prompt: int  # the request's own prompt, estimated
    context: int  # what a sample without max_tokens can fill, its prompt included
    thinking: ThinkingPlan | None = None

    @property
    def max_tokens(self) -> int | None:
        return self.req.max_tokens

    def call(self, n: int, limit: int | None, prompt: int | None = None) -> int:
        """One plain upstream call of ``n`` samples: its prompt once, each sample's completion."""
        p = self.prompt if prompt is None else prompt
        completion = limit if limit is not None else max(self.context - p, 1)
        return p + n * completion

    def samples(self, n: int, limit: int | None) -> int:
        """One call of ``n`` samples of the request's prompt, through the thinking budget on a
        reasoning tier (``policies.thinking``): forced thinking is a first call stopped at the
        budget, then per sample a continuation that re-reads prompt, thinking and the closing."""
        plan = self.thinking
        if plan is None or not plan.forced or (plan.budget == 0 and plan.thinking.off):
            return self.call(n, limit)
        thinking, room = token_limits(plan, limit)
        t = plan.thinking
        closing = text_tokens(t.start + "\n" + t.end + t.answer_prompt) + MESSAGE_OVERHEAD
        return self.prompt + n * thinking + n * (self.prompt + thinking + closing + room)

    def generated(self, limit: int | None) -> int:
        """The most tokens one sample's text can hold (what a probe or a judge re-reads)."""
        return self.samples(1, limit) - self.prompt


Bound = Callable[[Any, Shape], int]


def single(params: SingleParams, shape: Shape) -> int:
    """One call with the client's ``n``."""
    return shape.samples(shape.req.n, shape.max_tokens)


def adaptive_rounds(params: AdaptiveBonParams) -> list[int]:
    """The size of every round when nothing stops early (``AdaptiveBonPolicy._round_size``)."""
    least = min(params.min_samples, params.max_samples)
    gated = params.single_sample_confidence is not None and least < params.max_samples
    sizes: list[int] = []
    drawn = 0
    while drawn < params.max_samples:
        wanted = 1 if gated and not sizes else max(least - drawn, 0) or params.step
        sizes.append(min(wanted, params.max_samples - drawn))
        drawn += sizes[-1]
    return sizes


def adaptive_bon(params: AdaptiveBonParams, shape: Shape) -> int:
    """Every round up to ``max_samples``, each paying its prompt once; with ``prune``, or on a
    reasoning tier (whose streamed rounds send their thinking live), every sample may be its
    own stream (``policies.pruning``), paying its prompt."""
    thinks = shape.thinking is not None and shape.thinking.budget > 0
    if params.prune or thinks:
        return sum(size * shape.samples(1, shape.max_tokens) for size in adaptive_rounds(params))
    return sum(shape.samples(size, shape.max_tokens) for size in adaptive_rounds(params))


def convergence(params: ConvergenceParams, shape: Shape) -> int:
    """The chain, plus ``max_probes`` probes (at most one per chain token: a probe needs fresh
    deltas), each re-reading the prompt, the chain so far and the suffix."""
    chain = shape.generated(shape.max_tokens)
    probes = min(params.max_probes, chain)
    suffix = text_tokens(params.probe_suffix)
    if shape.thinking is not None:  # a thinking trace is probed closed, then answered
        t = shape.thinking.thinking
        suffix += text_tokens(t.start + t.end + t.answer_prompt)
    probe = shape.prompt + MESSAGE_OVERHEAD + chain + suffix + params.probe_max_tokens
    return shape.samples(1, shape.max_tokens) + probes * probe


def speculative(params: SpeculativeParams, shape: Shape) -> int:
    """Per step: a draft, the judge's one token, and the judge tier's rewrite; each re-reads
    the settled trace, which grows by at most a step (and its separator) per step."""
    limit = shape.max_tokens
    step = params.max_step_tokens if limit is None else min(params.max_step_tokens, limit)
    settled = params.max_steps * step if limit is None else limit
    draft = shape.prompt + MESSAGE_OVERHEAD
    judge = prompt_estimate(judge_body(shape.req.messages, "", ""))
    total = 0
    for k in range(params.max_steps):
        trace = min(k * step, settled) + k * SEPARATOR_TOKENS
        total += 2 * (draft + trace + step) + judge + trace + step + 1
    plan = shape.thinking
    if plan is not None and plan.budget > 0:  # the steps thought; the judge tier answers
        _, room = token_limits(plan, limit)
        t = plan.thinking
        closing = text_tokens(t.start + "\n" + t.end + t.answer_prompt)
        trace = settled + params.max_steps * SEPARATOR_TOKENS
        total += draft + trace + closing + room
    return total


def worst_case_tokens(req: GenRequest, decision: Decision, context_tokens: int) -> int:
    """The most tokens ``decision`` can spend on ``req`` (probe of the router not included)."""
    bound = registry.facts(decision.params.name).worst_case
    shape = Shape(req, prompt_estimate(req.body()), context_tokens, decision.thinking)
    return bound(decision.params, shape)
