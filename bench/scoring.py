"""Question sets and answer scoring for ``ttc eval``: pure functions, no I/O but ``load_questions``.

A reply is correct when the answer or one of its aliases occurs in it as whole words, after both
are normalised the same way (``words``): Unicode-folded, accents dropped, lower-cased, split into
words and numbers, numbers in canonical form ("1,000" and "1000.0" are "1000"). So "The capital
is Paris." matches "paris", "paris, france" matches "Paris, France!", but "O" (oxygen) is not
found in "H2O" or "oxygen", and "6" is not found in "16".

Numeric answers add one rule: when the reply contains digits, its *last* number must be the
answer, the usual convention for worked arithmetic ("3 x 12 = 36, 36 - 10 = 26" is right,
"26? No, 36" is wrong). A reply spelling the number out ("twenty-six") is matched by its alias.

Not handled, by design: a reply naming several candidates ("Paris or Lyon") is credited when one
is right; negation ("not Paris") is not understood. The sets ask for just the answer, which keeps
such replies rare; the per-question records keep every reply for inspection.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
# Currency signs are words of their own: "¥" is an accepted answer for the yen.
_CURRENCY = "[$\u00a2-\u00a5\u20a0-\u20cf]"
# A number first, so "1,000" stays one token; then a run of letters and digits ("h2o").
_TOKEN = re.compile(rf"(?:{_NUMBER})(?![^\W_])|[^\W_]+|{_CURRENCY}")
_IS_NUMBER = re.compile(rf"^(?:{_NUMBER})$")


@dataclass(frozen=True)
class Question:
    """One line of a question set: ``id``, ``question``, ``answer`` and accepted ``aliases``."""

    id: str
    question: str
    answer: str
    aliases: tuple[str, ...] = ()
    category: str = ""


def load_questions(path: str | Path) -> list[Question]:
    """Every question of a JSONL file, in file order; a bad line raises ``ValueError``."""
    questions: list[Question] = []
    seen: set[str] = set()
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            question = Question(
                id=str(raw["id"]),
                question=str(raw["question"]),
                answer=str(raw["answer"]),
                aliases=tuple(str(a) for a in raw.get("aliases", ())),
                category=str(raw.get("category", "")),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a question record ({exc})") from exc
        if question.id in seen:
            raise ValueError(f"{path}:{number}: duplicate id {question.id!r}")
        seen.add(question.id)
        questions.append(question)
    return questions


def canonical_number(token: str) -> str:
    """'1,000' -> '1000', '5.0' -> '5', '0.50' -> '0.5', '007' -> '7'."""
    whole, _, decimals = token.replace(",", "").partition(".")
    whole, decimals = whole.lstrip("0") or "0", decimals.rstrip("0")
    return f"{whole}.{decimals}" if decimals else whole


def words(text: str) -> tuple[str, ...]:
    """``text`` as normalised words: folded, accent-free, lower case, numbers canonical."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return tuple(_canonical(m.group()) for m in _TOKEN.finditer(plain))


def _canonical(token: str) -> str:
    return canonical_number(token) if _IS_NUMBER.match(token) else token


def _is_number(token: str) -> bool:
    return bool(_IS_NUMBER.match(token))


def contains_words(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """Whether ``needle`` occurs in ``haystack`` as a contiguous run of whole words."""
    if not needle or len(needle) > len(haystack):
        return False
    size = len(needle)
    return any(
        tuple(haystack[i : i + size]) == tuple(needle) for i in range(len(haystack) - size + 1)
    )


def accepted_forms(question: Question) -> set[tuple[str, ...]]:
    """The normalised answer and aliases (empty ones dropped)."""
    forms = {words(text) for text in (question.answer, *question.aliases)}
    forms.discard(())
    return forms


def is_correct(reply: str, question: Question) -> bool:
    """Whether ``reply`` gives ``question``'s answer (see the module docstring for the rules)."""
    reply_words = words(reply)
    forms = accepted_forms(question)
    if reply_words in forms:
        return True
    if not any(contains_words(reply_words, form) for form in forms):
        return False
    gold = words(question.answer)
    if len(gold) == 1 and _is_number(gold[0]):
        return _last_number(reply_words) in (None, gold[0])
    return True


def _last_number(tokens: Iterable[str]) -> str | None:
    numbers = [t for t in tokens if _is_number(t)]
    return numbers[-1] if numbers else None
