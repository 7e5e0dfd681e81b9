"""Selection for free-form answers: which sample to return when samples cannot vote.

An open prompt (prose, code, lists, creative text, prompts with many valid answers) has no short
answer two samples could share, so a vote on extracted answers is a vote on stray words (issue
24: a poem's vote was on the word "seen"). ``adaptive_bon`` treats a request as open when its
params say so (``selection: usc | medoid``, set by the router for open-shaped prompts) or when
its first sample overturns the closed shape (``open_shape``: no short answer, or a long text
that marks none). Then samples are compared as texts:

- ``similarity``: the Jaccard index of the two texts' word sets. Cheap (linear), symmetric, and
  blind to word order, so a reworded sentence ("Paris is the capital of France." / "The
  capital of France is Paris.") is identical while two different poems share a fifth.
- ``near_identical``: when the first two samples are at least that similar, a third would not
  change the answer: stop, answer with the first (the greedy one when the gate drew it).
- ``medoid``: the sample most similar, on average, to the others: the free-form counterpart of a
  plurality vote, with no model call.
- USC, Universal Self-Consistency (Chen et al. 2023): the model is shown the candidates after
  the request's own conversation (its prompt is cached) and names the most consistent one in
  one greedy token (``usc_body``, ``usc_pick``), billed as ``judge``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from core.backend import Backend
from core.errors import ContractReached, UpstreamError
from core.request import GenRequest
from core.tracing import subcall
from core.usage import UsageLedger
from policies.answers import marked_answer
from policies.judge import digit_probabilities, message_text

Selection = Literal["vote", "usc", "medoid"]
OpenSelection = Literal["usc", "medoid"]
_WORD = re.compile(r"[^\W_]+")
# 60 words: past a short answer and its sentence of context (the closed sets' answers take
# 5-30 words at max_tokens 48), a text whose answer is only a trailing number or the side of a
# copula is prose that happens to contain one, not a stated answer.
LONG_ANSWER_WORDS = 60
# 9 candidates: USC names one by a single digit, 1-9.
USC_MAX_CANDIDATES = 9
# 1,500 characters (about 375 tokens) per candidate: the judge's prompt must fit the context
# with several of them; a longer candidate is judged on its opening.
USC_CANDIDATE_CHARS = 1500
USC_PREFIX = "The most consistent response is Response "
# 20: the most vLLM's OpenAI server returns; the candidates' digits are among them.
USC_TOP_LOGPROBS = 20


def words(text: str) -> frozenset[str]:
    """The lower-case words (letters and digits) of ``text``."""
    return frozenset(_WORD.findall(text.lower()))


def similarity(first: str, second: str) -> float:
    """Jaccard index of the two texts' word sets, in [0, 1]; two empty texts are identical."""
    a, b = words(first), words(second)
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def medoid(texts: Sequence[str]) -> tuple[int, float]:
    """(position, mean similarity to the others) of the most central text; the earliest wins a
    tie, so the greedy first sample is preferred among equals. (0, 1.0) for one text."""
    if len(texts) < 2:
        return 0, 1.0
    sets = [words(text) for text in texts]
    scores = [
        math.fsum(_jaccard(sets[i], sets[j]) for j in range(len(sets)) if j != i) / (len(sets) - 1)
        for i in range(len(sets))
    ]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best, scores[best]


def centrality_order(texts: Sequence[str], first: int) -> list[int]:
    """``first``, then the other positions by mean similarity to the rest, most central first."""
    sets = [words(text) for text in texts]

    def centrality(i: int) -> float:
        return math.fsum(_jaccard(sets[i], other) for j, other in enumerate(sets) if j != i)

    rest = sorted((i for i in range(len(texts)) if i != first), key=lambda i: (-centrality(i), i))
    return [first, *rest]


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def open_shape(text: str, answer: str | None) -> str | None:
    """Why a first sample says its request is open (None: it is closed): it states no short
    answer, or it is long (over ``LONG_ANSWER_WORDS`` words) and marks no answer (no box, no
    "the answer is", no choice letter), so what was read from it is a stray word."""
    if answer is None:
        return "the first sample states no short answer"
    length = len(text.split())
    if length > LONG_ANSWER_WORDS and marked_answer(text) is None:
        return f"the first sample is long ({length} words) and marks no answer"
    return None


def usc_body(messages: Sequence[Mapping[str, Any]], candidates: Sequence[str]) -> dict[str, Any]:
    """The upstream body of the USC call: the request's conversation (a cached prefix), then
    the numbered candidates and the question, then the prefill naming a response."""
    shown = [text.strip()[:USC_CANDIDATE_CHARS] for text in candidates[:USC_MAX_CANDIDATES]]
    listing = "\n\n".join(f"Response {i}:\n{text}" for i, text in enumerate(shown, start=1))
    ask = (
        f"Here are {len(shown)} candidate responses to the request above.\n\n{listing}\n\n"
        "Which response agrees most with the others? Reply with its number only."
    )
    return {
        "messages": [
            *(dict(m) for m in messages),
            {"role": "user", "content": ask},
            {"role": "assistant", "content": USC_PREFIX},
        ],
        "continue_final_message": True,
        "add_generation_prompt": False,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": USC_TOP_LOGPROBS,
    }


def usc_pick(raw_choice: Mapping[str, Any], count: int) -> int | None:
    """The 0-based position of the candidate the USC call named: the most probable digit 1 to
    ``count`` among the first token's candidates (the lower one on a tie), else the digit it
    wrote; None when it named none of them."""
    content = (raw_choice.get("logprobs") or {}).get("content") or []
    top = content[0].get("top_logprobs") or [] if content else []
    probs = {d: p for d, p in digit_probabilities(top).items() if 1 <= d <= count}
    if probs:
        return max(sorted(probs), key=lambda digit: probs[digit]) - 1
    text = message_text((raw_choice.get("message") or {}).get("content")).strip()
    named = int(text[0]) if text[:1].isdigit() else 0
    return named - 1 if 1 <= named <= count else None


@dataclass(frozen=True)
class Selected:
    """The outcome of a free-form selection: sample positions best first, how the first was
    chosen (``near_identical``, ``usc`` or ``medoid``), its mean similarity to the others, and
    why USC fell back to the medoid (None when it did not)."""

    ranked: list[int]
    method: str
    agreement: float
    fallback: str | None = None


async def select_open(
    method: OpenSelection,
    req: GenRequest,
    tier: str,
    backend: Backend,
    texts: Sequence[str],
    ledger: UsageLedger,
    near_identical: bool,
) -> Selected:
    """Choose among free-form ``texts``: the first when the first two were ``near_identical``,
    else by ``method``. USC makes one ``judge`` call on ``tier`` (billed in ``ledger``); when
    the contract refuses it, the worker fails it or it names no candidate, the medoid stands."""
    if near_identical:
        return Selected(centrality_order(texts, 0), "near_identical", similarity(*texts[:2]))
    position, agreement = medoid(texts)
    fallback = None
    if method == "usc" and len(texts) > 1:
        try:
            pick = await _usc(req, tier, backend, texts, ledger)
        except (ContractReached, UpstreamError) as exc:
            pick, fallback = None, f"usc call failed: {exc}"
        if pick is not None:
            return Selected(centrality_order(texts, pick), "usc", _agreement(texts, pick))
        fallback = fallback or "usc named no candidate"
    return Selected(centrality_order(texts, position), "medoid", agreement, fallback)


async def _usc(
    req: GenRequest, tier: str, backend: Backend, texts: Sequence[str], ledger: UsageLedger
) -> int | None:
    body = usc_body(req.messages, texts)
    with subcall("judge"):
        completion = await backend.chat(tier, body, affinity=req.request_id)
    ledger.add("judge", tier, completion.usage)
    count = min(len(texts), USC_MAX_CANDIDATES)
    return usc_pick(completion.choices[0].raw, count) if completion.choices else None


def _agreement(texts: Sequence[str], position: int) -> float:
    others = [similarity(texts[position], t) for i, t in enumerate(texts) if i != position]
    return math.fsum(others) / len(others) if others else 1.0
