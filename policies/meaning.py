"""One key per meaning: what a sample's answer votes for. Pure functions.

``policies.answers.extract_answer`` returns an answer as the sample wrote it, normalised
("3/4", "0.75", "five apples", "paris", "b"); two samples agree when their *keys* are equal:

- an option letter, when the prompt lists options (``policies.options``): "(B)", "B)", "B.",
  "option B", "The answer is B", "(B) Paris" and the option's own text "Paris" all key "b";
- a number by its value: "1/2", "0.5", "\\frac{1}{2}", "50%" and "50 percent" key "0.5"
  (terminating values as decimals, others as reduced fractions: "1/3"); a unit or two after it
  ("5 apples", "220 km") and number words ("five", "twenty-six apples") do not matter; when the
  prompt asks for a percentage, a bare "71" is read as "71%";
- anything else, the normalised answer itself (case, articles, punctuation already folded).

``read_answer`` does both steps for a policy and keeps the stated form next to the key: the
first-sample gate looks for the stated answer among the sample's tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from policies.answers import extract_answer
from policies.options import leading_label, prompt_options

# A number in digits opening the answer: "1,000", "-3.5", "3/4", ".5", "50%", "50 %".
_DIGITS = re.compile(
    r"^(?P<number>-?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?|\.\d+))"
    r"\s*(?P<percent>%)?(?=\s|$)"
)
# The prompt asks for a percentage: "What percent ...", "as a percentage", "in %".
_ASKS_PERCENT = re.compile(r"percent|per cent|%", re.IGNORECASE)
# 2 words: "apples", "km per hour", "dollars left" is a unit and a word, longer is prose.
UNIT_WORDS = 2
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_SMALL = {word: value for value, word in enumerate(_ONES)} | {
    word: 20 + 10 * value for value, word in enumerate(_TENS)
}
_SCALES = {"thousand": 1000, "million": 1_000_000}


@dataclass(frozen=True)
class AnswerContext:
    """What the prompt tells about its answers: the question, its lettered options (letter ->
    the option text's key) and whether it asks for a percentage."""

    question: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    percent: bool = False

    @classmethod
    def of(cls, question: str | None) -> AnswerContext:
        options = {letter: _plain_key(text) for letter, text in prompt_options(question).items()}
        return cls(question, options, bool(question and _ASKS_PERCENT.search(question)))


@dataclass(frozen=True)
class Answer:
    """A sample's answer: ``key`` is what votes compare, ``stated`` the answer as written
    (normalised), which the first-sample gate finds among the sample's tokens."""

    key: str
    stated: str


def read_answer(text: str, mode: str, context: AnswerContext) -> Answer | None:
    """The sample's answer under ``mode`` (``extract_answer``) with its key; None: it states
    none. Raises ValueError for an unknown mode."""
    stated = extract_answer(text, mode, question=context.question, options=context.options)
    return None if stated is None else Answer(answer_key(stated, context), stated)


def answer_key(answer: str, context: AnswerContext | None = None) -> str:
    """The key of an extracted (normalised) answer: equal keys mean the same answer."""
    context = context or AnswerContext()
    options = context.options
    letter = answer if answer in options else leading_label(answer, options)
    if letter is not None:
        return letter
    key = _plain_key(answer, context.percent)
    return next((letter for letter, option in options.items() if option == key), key)


def _plain_key(answer: str, percent: bool = False) -> str:
    value = number_value(answer, percent)
    return answer if value is None else value_text(value)


def value_text(value: Fraction) -> str:
    """'0.5' for 1/2, '12' for 12, '-1/3' for -1/3: decimals when they terminate."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator != 1:
        return str(value)
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return format(exact.normalize(), "f")


def number_value(answer: str, percent: bool = False) -> Fraction | None:
    """The value of an answer that is a number (digits, a fraction, or number words) with at
    most ``UNIT_WORDS`` words after it; a percent sign or word divides by 100, as does a bare
    number when ``percent`` (the prompt asks for a percentage). None for anything else."""
    parsed = _leading_digits(answer) or _leading_words(answer)
    if parsed is None:
        return None
    value, rest = parsed
    per_cent = rest[:1] == ["%"] or rest[:1] == ["percent"] or rest[:2] == ["per", "cent"]
    rest = rest[2:] if rest[:1] == ["per"] else rest[1:] if per_cent else rest
    if len(rest) > UNIT_WORDS or any(char.isdigit() for word in rest for char in word):
        return None
    return value / 100 if per_cent or percent else value


def _leading_digits(answer: str) -> tuple[Fraction, list[str]] | None:
    match = _DIGITS.match(answer)
    if match is None:
        return None
    numerator, _, denominator = match.group("number").replace(",", "").partition("/")
    if denominator and int(denominator) == 0:
        return None
    value = Fraction(numerator) / (int(denominator) if denominator else 1)
    return value, (["%"] if match.group("percent") else []) + answer[match.end() :].split()


def _leading_words(answer: str) -> tuple[Fraction, list[str]] | None:
    """The longest run of number words that opens the answer, and the words after it."""
    words = answer.replace("-", " ").split()
    for end in range(len(words), 0, -1):
        value = _words_value(words[:end])
        if value is not None:
            return value, words[end:]
    return None


def _words_value(words: list[str]) -> Fraction | None:
    """Number words ("twenty six", "one hundred and five", "two thousand"), else None."""
    total = current = 0
    for position, word in enumerate(words):
        if word in _SMALL:
            current += _SMALL[word]
        elif word == "hundred" and position:
            current *= 100
        elif word in _SCALES and position:
            total, current = total + current * _SCALES[word], 0
        elif not (word == "and" and 0 < position < len(words) - 1):
            return None
    return Fraction(total + current)
