"""Answer extraction, answer-span confidence and hedges: pure functions.

Voting policies compare *answers*, not whole completions: `extract_answer` pulls the final
answer out of a sample and returns it in the canonical form of `normalise_answer`
(``policies.normalise``); ``policies.meaning`` turns it into the key votes compare, so two
samples agree exactly when their keys are equal (`policies.voting` counts them and decides
when to stop). Nothing here performs I/O or keeps state.
"""

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence

from policies.normalise import NUMBER
from policies.normalise import canonical_number as canonical_number
from policies.normalise import cluster_key as cluster_key
from policies.normalise import normalise_answer as normalise_answer
from policies.options import named_option

# 8 words: longer free text is an explanation, not an answer two samples could share verbatim.
SHORT_ANSWER_WORDS = 8
# 8 tokens: about the length of a short final answer with its closing punctuation.
FALLBACK_SPAN_TOKENS = 8
HEDGE_WORDS = frozenset({"wait", "hmm", "but", "however", "alternatively"})

_NUMBER_IN_TEXT = re.compile(rf"(?<![\w.])(?:{NUMBER})")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_PHRASE = re.compile(
    r"\b(?:(?:the|my)\s+(?:final\s+|correct\s+)?answer\s+is"
    r"|final\s+answer[*\s]*(?:is\b|[:：])|answer[*\s]*[:：])",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|\s+because\b")
# "The answer is 5, which is ...": an aside after the stated answer is not part of it (a comma
# inside "1,000" has no space after it).
_ASIDE = re.compile(r",\s|\s+(?:which|that|who|where|since|as)\s|\s[-—–]\s|\s\(")
_CHOICE = re.compile(
    r"(?i:\b(?:option|choice)\s*)\(?(?P<keyword>[A-Ja-j])\b"  # "option B", "choice (c)"
    r"|\((?P<paren>[A-J])\)"  # "(B)"
    r"|(?<![\w(])(?P<close>[A-J])\)"  # "B)"
)
_CHOICE_LETTERS = frozenset("abcdefghij")
_LATEX = (
    (re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}"), r"\1/\2"),
    (re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}"), r"\1"),
    (re.compile(r"\{,\}"), ","),
    (re.compile(r"\\[,;! ]|\\left|\\right"), ""),
)
_END_OF_TEXT = " \t\n.!*$%)`}]"
_HEDGE = re.compile(rf"\b(?:{'|'.join(sorted(HEDGE_WORDS))})\b", re.IGNORECASE)


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def _ends_text(text: str, match: re.Match[str]) -> bool:
    return not text[match.end() :].strip(_END_OF_TEXT)


def _finish(raw: str) -> str | None:
    for pattern, replacement in _LATEX:
        raw = pattern.sub(replacement, raw)
    return normalise_answer(raw) or None


def _braced(text: str, start: int) -> str | None:
    depth = 1
    for position in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[start:position]
    return None


def _extract_boxed(text: str) -> str | None:
    for match in reversed(list(_BOXED.finditer(text))):
        content = _braced(text, match.end())
        if content is not None:
            return _finish(content)
    return None


def _extract_answer_is(text: str) -> str | None:
    match = _last(_ANSWER_PHRASE, text)
    if match is None:
        return None
    phrase = text[match.end() :].lstrip(" \t\n:：").split("\n", 1)[0]
    boxed = _extract_boxed(phrase)
    if boxed is not None:
        return boxed
    ends = [m.start() for m in (_SENTENCE_END.search(phrase), _ASIDE.search(phrase)) if m]
    return _finish(phrase[: min(ends)] if ends else phrase)


def _choice_letter(match: re.Match[str] | None) -> str | None:
    return next(g for g in match.groups() if g is not None).lower() if match else None


def _extract_choice(text: str) -> str | None:
    stated = _extract_answer_is(text) or normalise_answer(text)
    return stated if stated in _CHOICE_LETTERS else _choice_letter(_last(_CHOICE, text))


def _extract_clear_choice(text: str) -> str | None:
    """A choice only when named ("option B") or when the letter ends the text."""
    match = _last(_CHOICE, text)
    clear = match is not None and (match.group("keyword") or _ends_text(text, match))
    return _choice_letter(match) if clear else None


def _extract_number(text: str) -> str | None:
    match = _last(_NUMBER_IN_TEXT, text)
    return canonical_number(match.group()) if match else None


# "... so he has 26 apples left.": a number then up to 3 words of unit ends a worked chain.
_PERCENT_AFTER = re.compile(r"[ \t]*(?:%|percent\b|per[ \t]+cent\b)", re.IGNORECASE)
_UNIT_TAIL = re.compile(r"[ \t]*%?(?:[ \t]+[^\W\d_]+){0,3}[ \t]*[.!)*$`]*[ \t]*$")


def _extract_final_number(text: str) -> str | None:
    """The last number: the final one of a worked chain, not the first. Trusted only when the
    text is short, or the number ends it (a unit of at most three words may follow)."""
    match = _last(_NUMBER_IN_TEXT, text)
    if match is None:
        return None
    short = len(text.split()) <= SHORT_ANSWER_WORDS
    if not (short or _ends_text(text, match) or _UNIT_TAIL.match(text, match.end())):
        return None
    percent = "%" if _PERCENT_AFTER.match(text, match.end()) else ""  # "50%" is not "50"
    return canonical_number(match.group()) + percent


# A copula splits "The capital of Japan is Tokyo." / "Tokyo is the capital of Japan."
_COPULA = re.compile(r"\s+(?:is|are|was|were|equals)\s+(?:called\s+|named\s+)?", re.IGNORECASE)
# The complement ends at the first clause break: "Paris, a city of ..." -> "Paris".
_CLAUSE_BREAK = re.compile(r"[,;:(—–]|\s-\s|\s(?:which|that|with|who|where|in)\s", re.I)
# 4 words: "new delhi", "carbon dioxide gas": longer sides are descriptions, not answers.
DECLARATIVE_ANSWER_WORDS = 4
# 12 words: the other side restates the question; longer, the copula sits inside prose.
DECLARATIVE_OTHER_WORDS = 12
_WORD = re.compile(r"[a-z0-9]+")
# A side that only points ("It is Tokyo.", "That's Paris", "There are five") is never the answer.
_POINTERS = frozenset({"it", "this", "that", "there", "here", "he", "she", "they", "which"})
_CONTRACTION = re.compile(r"\b(it|that|this|there|here|he|she|what)['’]s\b", re.IGNORECASE)


def _overlap(side: str, question_words: frozenset[str]) -> float:
    words = _WORD.findall(side)
    return sum(w in question_words for w in words) / len(words) if words else 1.0


def _extract_declarative(text: str, question: str | None = None) -> str | None:
    """The answering side of the first sentence's copula: how small chat models state answers.

    "The capital of Japan is Tokyo.", "Tokyo is the capital of Japan, ..." and "It's Tokyo."
    give "tokyo": a pointing subject ("it", "that", "there") leaves the other side.
    The answer is the side (the complement cut at its first clause break) that repeats less of
    the question, or the shorter one without a question; it must have at most
    DECLARATIVE_ANSWER_WORDS words.
    """
    first = _SENTENCE_END.split(_CONTRACTION.sub(r"\1 is", text.strip()), maxsplit=1)[0]
    parts = _COPULA.split(first, maxsplit=1)
    if len(parts) != 2:
        return None
    sides = (normalise_answer(parts[0]), normalise_answer(_CLAUSE_BREAK.split(parts[1], 1)[0]))
    if sides[0] in _POINTERS and 0 < len(sides[1].split()) <= DECLARATIVE_ANSWER_WORDS:
        return _quantity(sides[1])
    asked = frozenset(_WORD.findall(normalise_answer(question))) if question else frozenset()
    answer, other = sorted(sides, key=lambda side: (_overlap(side, asked), len(side.split())))
    words, other_words = len(answer.split()), len(other.split())
    if other_words > DECLARATIVE_OTHER_WORDS:
        return None
    if 0 < words <= DECLARATIVE_ANSWER_WORDS and (question or words < other_words):
        return _quantity(answer)
    return None


# "12 months", "100 degrees celsius": a number with its unit votes as the number alone.
_QUANTITY = re.compile(rf"^({NUMBER})(?:\s+[^\s\d]+){{1,2}}$")


def _quantity(answer: str) -> str:
    match = _QUANTITY.match(answer)
    return normalise_answer(match.group(1)) if match else answer


def _extract_text(text: str) -> str | None:
    """The whole short text; an entity with an aside ("Tokyo, Japan's largest city.") is the
    entity, when it has at most DECLARATIVE_ANSWER_WORDS words; a list ("red, green and
    blue") stays whole."""
    normalised = normalise_answer(text)
    if not 0 < len(normalised.split()) <= SHORT_ANSWER_WORDS:
        return None
    head, _, aside = normalised.partition(", ")
    listed = ", " in aside or _LIST_WORD.search(aside)
    if aside and not listed and 0 < len(head.split()) <= DECLARATIVE_ANSWER_WORDS:
        return normalise_answer(head)
    return normalised


_LIST_WORD = re.compile(r"\b(?:and|or|nor)\b")


def marked_answer(text: str) -> str | None:
    """An answer the text marks as its answer: a ``\\boxed{}``, an "answer is" line, or a
    choice letter named or ending the text; None when it marks none (prose, a stray word)."""
    return _extract_boxed(text) or _extract_answer_is(text) or _extract_clear_choice(text)


def _plain_latex(text: str) -> str:
    """Inline LaTeX as text: "$\\frac{1}{2}$" -> "$1/2$", so the number steps read it whole."""
    for pattern, replacement in _LATEX:
        text = pattern.sub(replacement, text)
    return text


Options = Mapping[str, str]
# Auto mode's steps in order; each takes the text, the question and the prompt's options.
_AUTO_ORDER: tuple[Callable[[str, str | None, Options], str | None], ...] = (
    lambda text, _, __: marked_answer(text),
    lambda text, _, options: named_option(text, options),
    lambda text, _, __: _extract_final_number(text),
    lambda text, question, _: _extract_declarative(text, question),
    lambda text, _, __: _extract_text(text),
)


def _extract_auto(
    text: str, question: str | None = None, options: Options | None = None
) -> str | None:
    plain = _plain_latex(text)
    steps = (step(plain, question, options or {}) for step in _AUTO_ORDER)
    return next((answer for answer in steps if answer is not None), None)


_EXTRACTORS: Mapping[str, Callable[[str], str | None]] = {
    "auto": _extract_auto,
    "boxed": _extract_boxed,
    "answer_is": _extract_answer_is,
    "number": _extract_number,
    "choice": _extract_choice,
    "text": _extract_text,
}


def extract_answer(
    text: str, mode: str = "auto", *, question: str | None = None, options: Options | None = None
) -> str | None:
    """The sample's final answer in `normalise_answer` form, or None if it states none.

    Modes: boxed (last `\\boxed{}`), answer_is (last "the answer is X" / "Final answer: X" /
    "Answer: X", up to the end of its sentence), number (last number), choice (letter A-J,
    lowercased), text (the whole text when at most SHORT_ANSWER_WORDS words), auto (inline
    LaTeX read as text, then boxed, answer_is, a clear choice, the option the text names when
    the prompt lists ``options`` (``policies.options``: letter -> option text), a number if the
    text is short or ends with it and its unit, the answering side of a short declarative
    sentence, short text). ``question`` (the prompt) lets auto mode tell which side of "X is Y"
    answers it. ``policies.meaning`` turns the answer into the key votes compare.
    Raises ValueError for an unknown mode.
    """
    if mode == "auto":
        return _extract_auto(text, question, options)
    extractor = _EXTRACTORS.get(mode)
    if extractor is None:
        raise ValueError(f"unknown answer mode {mode!r}; expected one of {sorted(_EXTRACTORS)}")
    return extractor(text)


def answer_span_confidence(
    tokens: Sequence[str], logprobs: Sequence[float], answer: str
) -> float | None:
    """Geometric-mean probability, exp(mean logprob), of the tokens spelling the answer.

    The span is the last case-insensitive occurrence of `answer` in the joined tokens; when
    absent (e.g. the text wrote "1,000" for "1000"), the last FALLBACK_SPAN_TOKENS
    non-whitespace tokens. None when there are no such tokens. Raises ValueError when
    `tokens` and `logprobs` differ in length.
    """
    if len(tokens) != len(logprobs):
        raise ValueError("tokens and logprobs must have the same length")
    lowered = [token.lower() for token in tokens]
    ends = list(itertools.accumulate(len(token) for token in lowered))
    needle = answer.lower().strip()
    start = "".join(lowered).rfind(needle) if needle else -1
    if start < 0:
        spoken = [lp for token, lp in zip(tokens, logprobs, strict=True) if token.strip()]
        span = spoken[-FALLBACK_SPAN_TOKENS:]
    else:
        stop = start + len(needle)
        pieces = zip(logprobs, ends, lowered, strict=True)
        span = [lp for lp, end, token in pieces if end > start and end - len(token) < stop]
    return math.exp(math.fsum(span) / len(span)) if span else None


def hedges(text: str) -> bool:
    """Whether the text contains a HEDGE_WORDS word (whole word, any case)."""
    return _HEDGE.search(text) is not None
