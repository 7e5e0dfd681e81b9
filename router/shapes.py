"""What a request's shape allows the router to choose, read from the policies' facts
(``policies.facts``): the policies a text completion can run, the ones that build one answer,
the ones whose samples vote (and so need sampling), and when a request is greedy.
"""

from __future__ import annotations

from core.errors import InvalidRequest
from core.request import GenRequest
from policies import registry


def text_runs_single(req: GenRequest, name: str, pinned: str | None, reasons: list[str]) -> bool:
    """Whether a text completion runs the plain policy: a token-id prompt, one that scores its
    prompt (echo upstream), or one whose policy needs chat messages."""
    plain = registry.plain_name()
    if token_prompt(req):
        return _token_prompt_runs_single(pinned, reasons)
    if req.passthrough.get("echo"):
        if pinned not in (None, plain):
            raise InvalidRequest(
                f"echo with logprobs scores the prompt in one call: ttc.policy must be '{plain}'",
                param="ttc.policy",
            )
        reasons.append(f"echo with logprobs: the prompt's own logprobs, one call; {plain}")
        return True
    if not registry.facts(name).text_prompts:
        _refuse_pinned_for_text(pinned, name)
        reasons.append(f"a text completion: {name} needs chat messages; {plain}")
        return True
    return False


def refuse_n_for_one_answer(pinned: str | None, req: GenRequest) -> None:
    if pinned is not None and req.n > 1 and registry.facts(pinned).one_answer:
        many = registry.names_where(lambda f: not f.one_answer)
        raise InvalidRequest(
            f"the policy '{pinned}' returns one answer: n must be 1 ({' and '.join(many)} "
            "return n)",
            param="n",
        )


def _refuse_pinned_for_text(pinned: str | None, name: str) -> None:
    if pinned is not None:
        text = registry.names_where(lambda f: f.text_prompts)
        raise InvalidRequest(
            f"the policy '{name}' needs chat messages; a text completion runs "
            f"{' or '.join(sorted(text))}",
            param="ttc.policy",
        )


def greedy(req: GenRequest) -> bool:
    temperature = req.sampling.get("temperature")
    return temperature is not None and float(temperature) == 0.0


def refuse_logprobs_if_pinned(pinned: str | None) -> None:
    if pinned is not None and not registry.facts(pinned).logprobs:
        raise InvalidRequest(
            f"the policy '{pinned}' joins drafted and judged steps and cannot return logprobs",
            param="logprobs",
        )


def token_prompt(req: GenRequest) -> bool:
    """A prompt of token ids: it travels as sent in ``passthrough`` (``server.api.completions``)
    and the router has no text of it."""
    return isinstance(req.passthrough.get("prompt"), list)


def _token_prompt_runs_single(pinned: str | None, reasons: list[str]) -> bool:
    plain = registry.plain_name()
    if pinned not in (None, plain):
        raise InvalidRequest(
            f"a token-id prompt is sent as is, in one call: ttc.policy must be '{plain}'",
            param="ttc.policy",
        )
    reasons.append(f"token-id prompt: no text for the router to read; {plain}")
    return True
