"""The canonical form of an answer, and the key near-identical free texts group under.

``normalise_answer`` folds what does not change an answer's meaning (Unicode form, accents,
case, quotes, markdown, ``$``, brackets, trailing punctuation, a leading article, number
formatting), so equal strings mean the same answer as written. Pure functions.
"""

import re
import unicodedata
from fractions import Fraction

# A number as written: "1,000", "-3.5", "6/8", ".5".
NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+|/\d+)?|-?\.\d+"
_NUMBER_WHOLE = re.compile(NUMBER)
_ARTICLE = re.compile(r"^(?:a|an|the)\s+")
_EDGE_CHARS = " \t\n\"'`*_$“”‘’«»"
_TRAILING = ".,;:!?"
_WRAPPERS = (("(", ")"), ("[", "]"), ("{", "}"))


def canonical_number(token: str) -> str:
    """'1,000' -> '1000', '5.0' -> '5', '0.50' -> '0.5', '6/8' -> '3/4', '-0' -> '0'."""
    plain = token.replace(",", "")
    if "/" in plain:
        numerator, denominator = plain.split("/")
        if int(denominator) == 0:
            return plain
        return str(Fraction(int(numerator), int(denominator)))
    sign = "-" if plain.startswith("-") else ""
    whole, _, decimals = plain.lstrip("-").partition(".")
    whole, decimals = whole.lstrip("0") or "0", decimals.rstrip("0")
    digits = f"{whole}.{decimals}" if decimals else whole
    return digits if digits == "0" else sign + digits


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text))
    kept = "".join(char for char in decomposed if not unicodedata.combining(char))
    return unicodedata.normalize("NFC", kept)


def _unwrap(text: str) -> str:
    for opening, closing in _WRAPPERS:
        inner = text[1:-1]
        if text[:1] == opening and text[-1:] == closing and not {opening, closing} & set(inner):
            return inner
    return text


def normalise_answer(s: str) -> str:
    """Canonical form of an answer: equal strings mean the same answer.

    NFKC, accents and case dropped; surrounding quotes, markdown, `$`, brackets, trailing
    punctuation and a leading article removed; whitespace collapsed; a bare number made
    canonical (see `canonical_number`). Idempotent.
    """
    text = " ".join(_strip_marks(s).lower().split())
    previous = None
    while text != previous:
        previous = text
        text = _unwrap(text.strip(_EDGE_CHARS).rstrip(_TRAILING).lstrip(":").strip())
        text = _ARTICLE.sub("", text)
    return canonical_number(text) if _NUMBER_WHOLE.fullmatch(text) else text


def cluster_key(text: str) -> str:
    """Key under which near-identical open-ended texts (no extractable answer) group."""
    without_punctuation = re.sub(r"[^\w\s]", " ", normalise_answer(text))
    return " ".join(without_punctuation.split())
