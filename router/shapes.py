"""What a request's shape allows the router to choose: the policies a text completion can
run, the ones that build one answer, and when a request is greedy (``router.router``).
"""

from __future__ import annotations

from core.errors import InvalidRequest
from core.request import GenRequest

# Policies that work on a raw prompt (``/v1/completions``): the others continue or judge chat
# messages (probes with continue_final_message, judge prompts, drafted steps).
TEXT_POLICIES = frozenset({"single", "adaptive_bon"})
# Policies that build one answer (a chain, a trace of steps, an escalation): never n of them.
ONE_ANSWER = frozenset({"convergence", "speculative", "cascade"})


def text_runs_single(req: GenRequest, name: str, pinned: str | None, reasons: list[str]) -> bool:
    """Whether a text completion runs ``single``: one that scores its prompt (echo upstream),
    or one whose policy needs chat messages."""
    if token_prompt(req):
        return _token_prompt_runs_single(pinned, reasons)
    if req.passthrough.get("echo"):
        if pinned not in (None, "single"):
            raise InvalidRequest(
                "echo with logprobs scores the prompt in one call: ttc.policy must be 'single'",
                param="ttc.policy",
            )
        reasons.append("echo with logprobs: the prompt's own logprobs, one call; single")
        return True
    if name not in TEXT_POLICIES:
        _refuse_pinned_for_text(pinned, name)
        reasons.append(f"a text completion: {name} needs chat messages; single")
        return True
    return False


def refuse_n_for_one_answer(pinned: str | None, req: GenRequest) -> None:
    if pinned in ONE_ANSWER and req.n > 1:
        raise InvalidRequest(
            f"the policy '{pinned}' returns one answer: n must be 1 (single and adaptive_bon "
            "return n)",
            param="n",
        )


def _refuse_pinned_for_text(pinned: str | None, name: str) -> None:
    if pinned is not None:
        raise InvalidRequest(
            f"the policy '{name}' needs chat messages; a text completion runs "
            f"{' or '.join(sorted(TEXT_POLICIES))}",
            param="ttc.policy",
        )


def greedy(req: GenRequest) -> bool:
    temperature = req.sampling.get("temperature")
    return temperature is not None and float(temperature) == 0.0


def refuse_logprobs_if_pinned(pinned: str | None) -> None:
    if pinned == "speculative":
        raise InvalidRequest(
            "speculative joins drafted and judged steps and cannot return logprobs",
            param="logprobs",
        )


def token_prompt(req: GenRequest) -> bool:
    """A prompt of token ids: it travels as sent in ``passthrough`` (``server.api.completions``)
    and the router has no text of it."""
    return isinstance(req.passthrough.get("prompt"), list)


def _token_prompt_runs_single(pinned: str | None, reasons: list[str]) -> bool:
    if pinned not in (None, "single"):
        raise InvalidRequest(
            "a token-id prompt is sent as is, in one call: ttc.policy must be 'single'",
            param="ttc.policy",
        )
    reasons.append("token-id prompt: no text for the router to read; single")
    return True
