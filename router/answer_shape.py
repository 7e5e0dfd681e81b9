"""The answer shape a request expects, predicted from its prompt before any sample is drawn.

*closed*: one short answer that two samples can share (a number, an option letter, an entity,
yes/no, a boxed or "the answer is" line): votes can settle it, so extra samples can buy
accuracy. *open*: prose, code, lists, creative text, prompts with many valid answers ("Name a
color."), text continuations: samples never agree word for word, so a vote buys nothing and
``model: "auto"`` answers with one sample. The first sample can still overturn a *closed*
guess (``policies.adaptive_bon``: no short answer in it, or a long one, means open).

The cues are cheap regular expressions over the bounded prompt text (``router.features``),
checked in this order: an explicit short-answer instruction or listed options (closed); an
instruction to write, explain, list, translate, suggest, or to name *one* of many (open); a
question that asks for a fact, a number or a yes/no (closed); a long ``max_tokens`` (open).
What is left is open: most chat traffic is. Each guess carries the cue that decided it, which
``ttc.reasons`` reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.request import GenRequest
from router.features import prompt_text

CLOSED = "closed"
OPEN = "open"

_SHORT_ANSWER = re.compile(
    r"\b(answer with (just|only|a number|a word|one)|"
    r"(just|only) (the|a|one) (number|name|word|letter|city|year|"
    r"answer|option)|one word|single word|in one word|yes or no|true or false|"
    r"the answer is|final answer|\\boxed|answer:\s*$|choose (one|the correct)|"
    r"which (one|option) is correct)",
    re.MULTILINE,
)
# Two or more listed options: "(A) ...", "A) ...", "A. ..." at line starts or inline.
_OPTION = re.compile(r"(?:^|\s)\(?([A-Ea-e])[).]\s+\S", re.MULTILINE)
_OPEN_TASK = re.compile(
    r"^(please\s+)?(can you\s+|could you\s+|would you\s+)?("
    r"write|compose|draft|create|generate|make|rewrite|edit|improve|paraphrase|"
    r"explain|describe|discuss|elaborate|summari[sz]e|outline|analy[sz]e|review|"
    r"list|enumerate|translate|suggest|recommend|brainstorm|propose|plan|design|"
    r"implement|code|help|tell me (about|a|an|how|why)|give (me )?(some|a few|\d+|ideas|"
    r"tips|advice|an? example|examples|a list|a summary|reasons)|"
    r"name (a|an|one|some|any|\d+|a few)|share|imagine|pretend|continue|complete the story)\b",
)
_OPEN_ANYWHERE = re.compile(
    r"\b(pros and cons|step[- ]by[- ]step guide|in detail|an essay|a poem|a haiku|a story|"
    r"a letter|an email|a function|a script|a recipe|ideas for|tips for|advice on|"
    r"example of|examples of|how (do|can|should|would) (i|we|you)|what are some|"
    r"why (do|does|is|are|did)|what do you think|your opinion)\b"
)
_FACT_QUESTION = re.compile(
    r"^((at|in|on|for|from|of|to|by) (what|which|whom)|"
    r"what|who|whom|whose|where|when|which|how (many|much|far|long|old|tall|big)|"
    r"is|are|was|were|does|do|did|can|could|will|has|have|name the)\b"
)
_MATH = re.compile(
    r"\d\s*[-+*/×÷^]\s*\d|\\frac|\\sqrt|=\s*\?|\bsolve\b|\bcompute\b|\bcalculate\b|"
    r"\bhow (many|much)\b.*\d|\d.*\bhow (many|much)\b"
)
# The question a prompt ends with: its last sentence that ends in "?".
_LAST_QUESTION = re.compile(r"([^.!?\n]*\?)\s*$")
# 256 tokens: room for an explanation or a piece of code, far more than a short answer needs.
_LONG_ANSWER_TOKENS = 256
# 400 characters: a question longer than this usually carries a task, not a fact lookup.
_SHORT_QUESTION_CHARS = 400


@dataclass(frozen=True)
class AnswerShape:
    shape: str | None  # CLOSED | OPEN; None: no text to read (token ids, no user message)
    cue: str  # what decided it, for ttc.reasons

    def reason(self) -> str:
        return f"answer shape {self.shape}: {self.cue}"

    def excludes(self, served: frozenset[str]) -> bool:
        """Whether a policy serving the ``served`` shapes cannot serve this one."""
        return self.shape is not None and self.shape not in served


def predict_shape(req: GenRequest) -> AnswerShape:
    """The answer shape ``req`` expects, and the cue that decided it."""
    if req.text_only:
        return _text_shape(req.prompt or "")
    text = prompt_text(req).strip()
    if not text:
        return AnswerShape(None, "no prompt text")
    lower = text.lower()
    if _SHORT_ANSWER.search(lower):
        return AnswerShape(CLOSED, "asks for a short answer")
    if len(_OPTION.findall(text)) >= 2:
        return AnswerShape(CLOSED, "lists options")
    if _OPEN_TASK.match(lower) or _OPEN_ANYWHERE.search(lower):
        return AnswerShape(OPEN, "asks for writing, explanation, a list or one of many answers")
    if _MATH.search(lower):
        return AnswerShape(CLOSED, "a calculation")
    if _asks_a_fact(lower) and len(text) <= _SHORT_QUESTION_CHARS:
        if (req.max_tokens or 0) >= _LONG_ANSWER_TOKENS:
            return AnswerShape(OPEN, f"a question with room for {req.max_tokens} tokens")
        return AnswerShape(CLOSED, "a question for a fact, a number or yes/no")
    return AnswerShape(OPEN, "no closed-question cue")


def _asks_a_fact(lower: str) -> bool:
    """Whether the prompt, or the question it ends with, asks for a fact, a number or yes/no."""
    last = _LAST_QUESTION.search(lower)
    return bool(_FACT_QUESTION.match(lower) or (last and _FACT_QUESTION.match(last[1].strip())))


def _text_shape(prompt: str) -> AnswerShape:
    """A raw prompt is a continuation (open) unless it reads as a closed question."""
    tail = prompt.strip().lower()[-_SHORT_QUESTION_CHARS:]
    if re.search(r"(answer|a):\s*$", tail) or (
        tail.endswith("?") and (_SHORT_ANSWER.search(tail) or len(_OPTION.findall(tail)) >= 2)
    ):
        return AnswerShape(CLOSED, "a text prompt ending in a closed question")
    return AnswerShape(OPEN, "a text continuation")
