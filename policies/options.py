"""The lettered options a prompt lists, and which of them a sample names: pure functions.

A multiple-choice prompt lists its options as ``(A) Lyon (B) Paris``, ``A) Lyon`` / ``B. Paris``
/ ``C: Rome`` on lines of their own, or inline. ``prompt_options`` reads them (letters from A
in order, at least two, so a stray "A." in the question is no list); ``named_option`` finds the
option a sample names by its label ("(B) Paris", "B) Paris is the capital") or, when its first
sentence mentions exactly one of them, by the option's own text ("Paris is the capital.").
The letter is what samples vote for (``policies.meaning``): "(B)", "B.", "option B" and "Paris"
are one answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from policies.normalise import normalise_answer

# "(B) ", "B) ", "B. ", "B: " after a space or a line start; the label is an upper-case letter
# A-J (ten options: the most any common benchmark lists) so prose ("a) ...") is not mistaken.
_LABEL = re.compile(r"(?:(?<=\s)|^)(?:\((?P<paren>[A-J])\)|(?P<bare>[A-J])[).:])[ \t]+")
# An option's text ends at its line's end or its sentence's end ("(B) Paris. Answer with ...").
_OPTION_END = re.compile(r"\n|[.?!](?=\s|$)")
# A sample that opens with a label names that option: "(B) Paris", "B) ...", "B." alone, "B:".
_LEADING_LABEL = re.compile(r"^[\s*_\"'`]*\(?(?P<letter>[A-Ja-j])(?:\)|[.:](?=\s|$)|$)")
_FIRST_SENTENCE = re.compile(r"[.!?;\n](?=\s|$)")
_LETTERS = "ABCDEFGHIJ"
_WORD = re.compile(r"[^\W_]+")
_NEGATION = re.compile(r" (?:not|no|never|nor|isn|wasn|aren|t) ")


def prompt_options(question: str | None) -> dict[str, str]:
    """Lower-case letter -> the option's text in ``normalise_answer`` form; empty when the
    prompt lists fewer than two options labelled from A in order."""
    if not question:
        return {}
    run: list[re.Match[str]] = []
    for match in _LABEL.finditer(question):
        letter = match.group("paren") or match.group("bare")
        if letter == _LETTERS[len(run) : len(run) + 1]:  # the next letter in order
            run.append(match)
        elif letter == "A":  # a new list starts: the last one wins
            run = [match]
    if len(run) < 2:
        return {}
    ends = [match.start() for match in run[1:]] + [len(question)]
    options: dict[str, str] = {}
    for match, end in zip(run, ends, strict=True):
        text = question[match.end() : end]
        stop = _OPTION_END.search(text)
        options[_LETTERS[len(options)].lower()] = normalise_answer(
            text[: stop.start()] if stop else text
        )
    return options


def leading_label(text: str, options: Mapping[str, str]) -> str | None:
    """The option letter ``text`` opens with ("(B) Paris", "b) paris", "B."), if one of
    ``options``."""
    match = _LEADING_LABEL.match(text)
    letter = match.group("letter").lower() if match else None
    return letter if letter in options else None


def mentioned_option(text: str, options: Mapping[str, str]) -> str | None:
    """The one option whose text the first sentence of ``text`` mentions (whole words); None
    when it mentions none or several ("Lyon or Paris"), or denies ("Lyon is not ...")."""
    first = _FIRST_SENTENCE.split(text.strip(), maxsplit=1)[0]
    spoken = _padded_words(normalise_answer(first))
    if _NEGATION.search(spoken):  # "Lyon is not the capital": mentioned, not named
        return None
    found = {
        letter
        for letter, option in options.items()
        if _WORD.search(option) and _padded_words(option) in spoken
    }
    return found.pop() if len(found) == 1 else None


def _padded_words(text: str) -> str:
    """The words of ``text`` joined by single spaces, with a space at each end, so a phrase's
    words occur in a text's exactly when its padded form is a substring of the text's."""
    return f" {' '.join(_WORD.findall(text))} "


def named_option(text: str, options: Mapping[str, str]) -> str | None:
    """The letter of the option a sample names: its leading label, else the one option its
    first sentence mentions; None without options or when it names none."""
    if not options:
        return None
    return leading_label(text, options) or mentioned_option(text, options)
