"""The step judge of speculative reasoning: its prompt and its score, as pure functions.

The judge tier sees the conversation, the solution so far and the newest step marked, and
continues an assistant message prefilled with ``Score: `` by exactly one token at temperature 0.
The score is read from that token's ``top_logprobs``, never from the sampled text alone: the
probability mass over the digits 0-9 says how sure the judge is, and the expected digit uses it
(SpecReason, Pan et al. 2025, judges steps the same way).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

ScoreMode = Literal["expected", "top"]

JUDGE_SYSTEM = (
    "You check a solution one step at a time. Rate the LAST step of the solution, marked "
    "[LAST STEP], for correctness and usefulness on a scale from 0 to 9: 0 means wrong or "
    "useless, 9 means correct and a clear step toward the answer. Reply with a single digit."
)
SCORE_PREFIX = "Score: "
STEP_MARK = "[LAST STEP]"
# 20: the most vLLM's OpenAI server returns; the ten digits almost always fit in it.
JUDGE_TOP_LOGPROBS = 20
_DIGITS = frozenset("0123456789")


def message_text(content: Any) -> str:
    """The text of an OpenAI message ``content``: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
        return "".join(str(part) for part in parts)
    return ""


def conversation_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """What the judge is told the question is.

    One user turn is quoted as it is; a longer conversation (system prompt excluded) as
    ``role: text`` lines, so the judge sees what the step answers.
    """
    turns = [m for m in messages if m.get("role") != "system"]
    if len(turns) == 1:
        return message_text(turns[0].get("content"))
    return "\n".join(f"{m.get('role', 'user')}: {message_text(m.get('content'))}" for m in turns)


def judge_messages(
    conversation: Sequence[Mapping[str, Any]], solution_so_far: str, step: str
) -> list[dict[str, Any]]:
    """The judge's chat: instructions, question plus marked trace, and the score prefill.

    The trace precedes the marked step, so consecutive judge calls of one request share a
    growing prompt prefix (prefix caching on the judge tier pays for it).
    """
    before = solution_so_far.strip() or "(no earlier steps)"
    user = (
        f"Question:\n{conversation_text(conversation)}\n\n"
        f"Solution so far:\n{before}\n\n"
        f"{STEP_MARK}\n{step.strip()}\n\n"
        "Rate the last step from 0 to 9."
    )
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": SCORE_PREFIX},
    ]


def judge_body(
    conversation: Sequence[Mapping[str, Any]], solution_so_far: str, step: str
) -> dict[str, Any]:
    """The whole upstream body of one judge call: one greedy token with its top logprobs."""
    return {
        "messages": judge_messages(conversation, solution_so_far, step),
        "continue_final_message": True,
        "add_generation_prompt": False,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": JUDGE_TOP_LOGPROBS,
    }


def digit_probabilities(top_logprobs: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """Probability per digit among the candidate tokens; " 7" and "7" both count for 7.

    Tokens that are not one digit (after stripping whitespace) are ignored; an empty dict
    means the judge put no digit among its candidates.
    """
    probs: dict[int, float] = {}
    for candidate in top_logprobs:
        token = str(candidate.get("token", "")).strip()
        logprob = candidate.get("logprob")
        if token in _DIGITS and isinstance(logprob, int | float) and math.isfinite(logprob):
            probs[int(token)] = probs.get(int(token), 0.0) + math.exp(logprob)
    return probs


def score_digits(top_logprobs: Sequence[Mapping[str, Any]], mode: ScoreMode) -> float | None:
    """The judge's score in [0, 9], or None when no candidate token is a digit.

    ``expected``: the mean digit under the digit probabilities renormalised to sum to 1;
    ``top``: the most probable digit (the lower one on a tie).
    """
    probs = digit_probabilities(top_logprobs)
    total = math.fsum(probs.values())
    if not probs or total <= 0.0:
        return None
    if mode == "top":
        return float(max(sorted(probs), key=lambda digit: probs[digit]))
    return math.fsum(digit * p for digit, p in probs.items()) / total


def choice_score(raw_choice: Mapping[str, Any], mode: ScoreMode) -> float | None:
    """The score of one judge completion choice (the upstream choice object).

    Reads the first generated token's ``top_logprobs``; without them, a sampled digit is taken
    at face value. None when neither holds a digit.
    """
    content = (raw_choice.get("logprobs") or {}).get("content") or []
    if content:
        score = score_digits(content[0].get("top_logprobs") or [], mode)
        if score is not None:
            return score
    text = message_text((raw_choice.get("message") or {}).get("content")).strip()
    return float(text[0]) if text[:1] in _DIGITS else None
