"""Cheap, pure features of a chat request, computed before any token is generated.

``extract(req)`` reads the last user message (text parts only), the conversation and the
requested ``max_tokens``. Every feature is a float scaled to roughly [0, 1] so a linear model
can weigh them without a separate scaler, and every value is safe to log: no prompt text.
``prompt_text(req)`` is the text the n-gram models read; it never leaves the process unless the
trace config allows it.

The work is bounded whatever the request's size, since it runs on the event loop for every
request: a prompt longer than ``PROMPT_CHARS`` is read as its first and last
``PROMPT_CHARS / 2`` characters, and a conversation (or a content-part list) longer than
``2 * ENDS`` as its first and last ``ENDS`` items. A request within these bounds, as almost all
are, gets exactly the features it had before the bounds existed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.request import GenRequest

# Saturation points of the log-scaled counts: a prompt of ~2,000 characters or a conversation
# of 16 messages is "long"; beyond that more length says little more about difficulty.
_LONG_CHARS = 2000
_DEEP_MESSAGES = 16
_MANY_NUMBERS = 8
_LONG_ANSWER_TOKENS = 4096
# 4,096 characters: twice where ``length`` saturates and beyond the prompts the learned model
# was trained on; features and n-grams of that much text cost about a millisecond, and
# ``_MULTI_STEP``'s "if .+ then", quadratic on a line of repeated "if ", stays under ~10 ms.
PROMPT_CHARS = 4096
# 32 messages or content parts from each end: the system prompt leads, the task comes last.
ENDS = 32

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_MATH_OPERATOR = re.compile(r"[+\-*/^=×÷%]|\\frac|\\sqrt|\$")
_MATH_WORDS = re.compile(
    r"\b(how many|how much|total|sum|product|difference|percent|average|equation|solve|"
    r"calculate|compute|integral|derivative|probability|remainder|divided|multiplied|times)\b"
)
_CODE = re.compile(
    r"```|\bdef |\bclass |\bfunction\b|\breturn\b|\bimport\b|[{};]\s*$|\bpython\b|\bjavascript\b|"
    r"\bsql\b|\bcompile|\bbug\b|\bstack trace\b",
    re.MULTILINE,
)
_MULTI_STEP = re.compile(
    r"\b(then|after that|afterwards|next|finally|first|second|each|every|remaining|left|"
    r"step by step|explain why|prove|show that|if .+ then|given that|in total|altogether)\b"
)
_SHORT_ANSWER = re.compile(
    r"\b(answer with (just|only)|just the|only the|one word|single word|briefly|in short|"
    r"yes or no)\b"
)
_QUESTION_START = re.compile(r"^(what|who|where|when|which|how|why|is|are|does|do|can|name)\b")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Features:
    """Difficulty cues of one request; all values in [0, 1]."""

    length: float
    words: float
    numbers: float
    math: float
    code: float
    question: float
    multi_step: float
    short_answer: float
    depth: float
    system_prompt: float
    max_tokens: float

    def as_dict(self) -> dict[str, float]:
        # Not dataclasses.asdict: its recursive deep copy is the router's costliest line.
        return {name: getattr(self, name) for name in _FEATURE_NAMES}

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(Features.__dataclass_fields__)


_FEATURE_NAMES: tuple[str, ...] = Features.names()


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text: a string ``content`` or the ``text`` of its content parts, bounded
    (``PROMPT_CHARS``, ``ENDS``)."""
    content = message.get("content")
    if isinstance(content, str):
        return bounded(content)
    if isinstance(content, list):
        parts = [p.get("text", "") for p in ends(content) if isinstance(p, Mapping)]
        return bounded(" ".join(p for p in parts if isinstance(p, str)))
    return ""


def prompt_text(req: GenRequest) -> str:
    """The last user message, which carries the task in almost every chat request."""
    for message in reversed(ends(req.messages)):
        if message.get("role") == "user":
            return message_text(message)
    return message_text(req.messages[-1]) if req.messages else ""


def bounded(text: str) -> str:
    """``text``, or its first and last ``PROMPT_CHARS / 2`` characters; idempotent."""
    if len(text) <= PROMPT_CHARS:
        return text
    half = PROMPT_CHARS // 2
    return text[:half] + "\n" + text[-half:]


def ends(items: Sequence[Any]) -> Sequence[Any]:
    """``items``, or its first and last ``ENDS`` items."""
    if len(items) <= 2 * ENDS:
        return items
    return [*items[:ENDS], *items[-ENDS:]]


def _log_scale(value: float, saturation: float) -> float:
    return min(math.log1p(max(value, 0.0)) / math.log1p(saturation), 1.0)


def _hits(pattern: re.Pattern[str], text: str, saturation: int) -> float:
    return min(len(pattern.findall(text)) / saturation, 1.0)


def extract(req: GenRequest) -> Features:
    text = prompt_text(req)
    lower = text.lower().strip()
    roles = [m.get("role") for m in ends(req.messages)]
    max_tokens = req.max_tokens or 0
    return Features(
        length=_log_scale(len(text), _LONG_CHARS),
        words=_log_scale(len(_WORD.findall(text)), _LONG_CHARS / 5),
        numbers=_hits(_NUMBER, text, _MANY_NUMBERS),
        math=max(_hits(_MATH_OPERATOR, text, 4), _hits(_MATH_WORDS, lower, 2)),
        code=_hits(_CODE, text, 3),
        question=1.0 if lower.endswith("?") or _QUESTION_START.match(lower) else 0.0,
        multi_step=_hits(_MULTI_STEP, lower, 3),
        short_answer=1.0 if _SHORT_ANSWER.search(lower) else 0.0,
        depth=_log_scale(len(req.messages), _DEEP_MESSAGES),
        system_prompt=1.0 if "system" in roles or "developer" in roles else 0.0,
        max_tokens=_log_scale(max_tokens, _LONG_ANSWER_TOKENS),
    )
