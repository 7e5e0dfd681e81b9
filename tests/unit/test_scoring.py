"""Unit tests for bench.scoring: whole-word alias matching, numbers, and the question sets."""

from pathlib import Path

import pytest

from bench.scoring import Question, canonical_number, is_correct, load_questions, words

DATA = Path(__file__).resolve().parents[2] / "bench" / "data"

PARIS = Question("q1", "Capital of France?", "Paris", ("paris", "paris, france"))
OXYGEN = Question("q2", "Chemical symbol of oxygen?", "O", ("o",))
ROME = Question("q3", "Capital of Italy?", "Rome", ("rome", "roma"))
BOGOTA = Question("q4", "Capital of Colombia?", "Bogotá", ("bogota",))
APPLES = Question("q5", "Apples left?", "26", ("26", "twenty-six", "twenty six", "26 apples"))
SIX = Question("q6", "Change?", "6", ("6", "six", "$6"))
THOUSAND = Question("q7", "Grams in a kilogram?", "1000", ("1000", "one thousand"))


@pytest.mark.parametrize(
    ("reply", "question"),
    [
        ("Paris", PARIS),
        ("paris.", PARIS),
        ("The capital of France is Paris.", PARIS),
        ("**PARIS**, France", PARIS),
        ("Roma", ROME),
        ("Bogota", BOGOTA),
        ("Bogotá!", BOGOTA),
        ("The chemical symbol is O.", OXYGEN),
        ("26", APPLES),
        ("He has twenty-six apples left.", APPLES),
        ("3 x 12 = 36, and 36 - 10 = 26.", APPLES),
        ("She gets $6 back.", SIX),
        ("1,000 grams", THOUSAND),
        ("1000.0", THOUSAND),
    ],
)
def test_accepts_answer_or_alias_as_whole_words(reply: str, question: Question) -> None:
    assert is_correct(reply, question)


@pytest.mark.parametrize(
    ("reply", "question"),
    [
        ("H2O", OXYGEN),  # "o" inside a word is not the symbol
        ("Oxygen", OXYGEN),
        ("Parisian food is famous.", PARIS),
        ("Romeo", ROME),
        ("16", SIX),  # "6" inside a number is not 6
        ("6.5", SIX),
        ("Lyon", PARIS),
        ("", PARIS),
        ("26? No, he has 36 apples.", APPLES),  # the last number is the answer given
        ("100", THOUSAND),
    ],
)
def test_rejects_substrings_and_wrong_answers(reply: str, question: Question) -> None:
    assert not is_correct(reply, question)


def test_numbers_are_canonical() -> None:
    assert canonical_number("1,000") == "1000"
    assert canonical_number("5.0") == "5"
    assert canonical_number("0.50") == "0.5"
    assert canonical_number("007") == "7"
    assert words("It costs 1,000.50 dollars") == ("it", "costs", "1000.5", "dollars")


def test_words_fold_case_accents_and_punctuation() -> None:
    assert words("São Paulo, BRAZIL!") == ("sao", "paulo", "brazil")
    assert words("twenty-six") == words("twenty six") == ("twenty", "six")


@pytest.mark.parametrize("name", ["facts-dev.jsonl", "facts-test.jsonl", "hard-dev.jsonl"])
def test_every_shipped_answer_and_alias_scores_correct(name: str) -> None:
    questions = load_questions(DATA / name)
    assert questions
    for question in questions:
        for reply in (question.answer, *question.aliases):
            assert is_correct(reply, question), (question.id, reply)


def test_question_ids_are_unique_across_sets() -> None:
    ids = [q.id for name in sorted(DATA.glob("*.jsonl")) for q in load_questions(name)]
    assert len(ids) == len(set(ids))


def test_load_questions_rejects_duplicates_and_bad_lines(tmp_path: Path) -> None:
    duplicate = tmp_path / "dup.jsonl"
    line = '{"id": "a", "question": "q", "answer": "x"}\n'
    duplicate.write_text(line + line)
    with pytest.raises(ValueError, match="duplicate id"):
        load_questions(duplicate)
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"id": "a", "question": "q"}\n')
    with pytest.raises(ValueError, match="missing.jsonl:1"):
        load_questions(missing)
