"""Unit tests for votes by meaning: policies.options, policies.meaning (issue 24, item 2).

Each form a sample may state one answer in gets its own test: samples that differ only in
wording must read as one key, and different answers must not.
"""

from __future__ import annotations

import pytest

from policies.meaning import AnswerContext, answer_key, number_value, read_answer
from policies.options import named_option, prompt_options
from policies.voting import NO_ANSWER, Vote, reported_votes, tally

CHOICES = "Which city is the capital of France? (A) Lyon (B) Paris"


def key(text: str, question: str | None = None) -> str | None:
    answer = read_answer(text, "auto", AnswerContext.of(question))
    return None if answer is None else answer.key


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (CHOICES, {"a": "lyon", "b": "paris"}),
        (
            "Pick one.\nA) red\nB) green\nC) blue\nAnswer with the letter.",
            {
                "a": "red",
                "b": "green",
                "c": "blue",
            },
        ),
        ("Which is larger?\nA. 3.5\nB. 2.75", {"a": "3.5", "b": "2.75"}),
        ("(A) Lyon (B) Paris. Answer with the letter.", {"a": "lyon", "b": "paris"}),
        ("A: yes B: no", {"a": "yes", "b": "no"}),
        ("What did J. R. R. Tolkien write?", {}),  # initials are no option list
        ("Only (A) here", {}),
        ("(B) Paris (C) Rome", {}),  # a list starts at A
        (None, {}),
    ],
)
def test_prompt_options(question: str | None, expected: dict[str, str]) -> None:
    assert prompt_options(question) == expected


@pytest.mark.parametrize(
    "text",
    [
        "(B)",
        "B)",
        "B.",
        "B",
        "b",
        "**B**",
        "option B",
        "Option (b) is right",
        "The answer is B",
        "The answer is B.",
        "Answer: (B)",
        "(B) Paris",
        "B) Paris is the capital",
        "B: Paris",
        "Paris",
        "paris.",
        "Paris is the capital of France.",
        "I think it is Paris.",
        "The answer is Paris.",
    ],
)
def test_every_spelling_of_an_option_is_its_letter(text: str) -> None:
    assert key(text, CHOICES) == "b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(A) Lyon", "a"),
        ("Lyon", "a"),
        ("Lyon is not the capital", "not the capital"),  # denied, not named
        ("Both Lyon and Paris are big cities", None),  # several named: no option step
    ],
)
def test_an_option_is_named_only_when_meant(text: str, expected: str | None) -> None:
    found = key(text, CHOICES)
    if expected is None:
        assert found not in ("a", "b")
    else:
        assert found == expected


def test_option_text_needs_the_prompt_to_list_options() -> None:
    assert key("Paris") == "paris"
    assert key("(B) Paris") != "b"  # no options: a label means nothing
    assert named_option("(B) Paris", {}) is None


def test_the_issue_example_counts_three_votes_for_b() -> None:
    """Issue 24: these once tallied {'(a) lyon': 2, 'b) paris': 1, '(b) paris': 1, 'b': 1}."""
    texts = ["(B) Paris", "The answer is B.", "B) Paris is the capital", "(A) Lyon", "(A) Lyon"]
    votes = [Vote(key(text, CHOICES), None, i) for i, text in enumerate(texts)]
    result = tally(votes)
    assert dict(result.counts) == {"b": 3, "a": 2}
    assert result.leader == "b"


@pytest.mark.parametrize(
    "text",
    ["5", "5 apples", "5 apples.", "five", "Five apples.", "$5", "5.0", "It is 5.", "five apples"],
)
def test_a_number_with_units_or_words_around_it(text: str) -> None:
    assert key(text, "How many apples are left?") == "5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("twenty-six", "26"),
        ("twenty six apples", "26"),
        ("one hundred and five", "105"),
        ("two thousand", "2000"),
        ("zero", "0"),
        ("There are five apples.", "5"),
    ],
)
def test_number_words(text: str, expected: str) -> None:
    assert key(text, "How many?") == expected


@pytest.mark.parametrize(
    "text", ["1/2", "2/4", "0.5", "0.50", ".5", "50%", "50 percent", "50 per cent", "It is 1/2."]
)
def test_equivalent_fractions_decimals_and_percentages(text: str) -> None:
    assert key(text, "What fraction of the pie is left?") == "0.5"


def test_fractions_that_do_not_terminate_stay_fractions() -> None:
    assert key("1/3") == key("2/6") == "1/3"
    assert key("0.33") != key("1/3")  # a rounded value is another answer
    assert key("3/4") == key("0.75") == "0.75"


def test_a_bare_number_is_a_percentage_when_the_prompt_asks_for_one() -> None:
    question = "What percent of the Earth's surface is water?"
    assert key("71", question) == key("71%", question) == key("71 percent") == "0.71"


@pytest.mark.parametrize(
    "text",
    [r"\frac{1}{2}", r"$\frac{1}{2}$", r"$\dfrac{2}{4}$", r"\boxed{\frac{1}{2}}", r"\boxed{0.5}"],
)
def test_latex_forms(text: str) -> None:
    assert key(text) == "0.5"


@pytest.mark.parametrize(
    "text",
    [
        "3 * 12 = 36, and 36 - 10 = 26.",
        "Tom has 3 boxes of 12 apples, 36 apples, and gives away 10, so he has 26 apples left.",
        "First 3 x 12 = 36. Then 36 - 10 = 26",
        "He had 36; after giving 10 away he has 26 apples in total.",
    ],
)
def test_the_final_number_of_a_worked_chain(text: str) -> None:
    assert key(text, "How many apples does he have left?") == "26"


@pytest.mark.parametrize(
    "text",
    [
        "Tokyo",
        "Tokyo.",
        "tokyo",
        "TOKYO!",
        "It is Tokyo.",
        "It's Tokyo.",
        "That is Tokyo",
        "The capital of Japan is Tokyo.",
        "Tokyo is the capital of Japan.",
        "**Tokyo**",
        '"Tokyo"',
        "The answer is Tokyo.",
        "Tokyo, Japan's largest city.",
        "Tokyo, Japan",
    ],
)
def test_short_phrasings_of_one_entity(text: str) -> None:
    assert key(text, "What is the capital of Japan?") == "tokyo"


def test_a_list_is_not_read_as_its_first_item() -> None:
    assert key("Red, green and blue") == "red, green and blue"
    assert key("Red, green, blue") == "red, green, blue"


def test_case_articles_and_punctuation() -> None:
    question = "What is the tallest structure in Paris?"
    assert key("The Eiffel Tower.", question) == key("eiffel tower", question) == "eiffel tower"
    assert key("An apple!") == key("apple") == "apple"


def test_different_answers_keep_different_keys() -> None:
    question = "What is the capital of Japan?"
    assert key("Tokyo", question) != key("Kyoto", question)
    assert key("5 apples") != key("6 apples")
    assert key("50%") != key("50")  # without a percentage asked, 50% is a half
    assert key("B", CHOICES) != key("(A) Lyon", CHOICES)


def test_number_value_refuses_prose() -> None:
    assert number_value("5 apples and 3 pears") is None
    assert number_value("1990s") is None
    assert number_value("3/0") is None
    assert number_value("paris") is None


def test_answer_key_is_stable_on_keys() -> None:
    context = AnswerContext.of(CHOICES)
    for raw in ("b", "0.5", "26", "tokyo", "1/3"):
        assert answer_key(answer_key(raw, context), context) == answer_key(raw, context)


def test_a_sample_with_no_answer_is_an_outcome_of_the_tally() -> None:
    votes = [Vote("b", None, 0), Vote(None, None, 1), Vote(None, None, 2), Vote("a", None, 3)]
    result = tally(votes)
    assert (result.total, result.unanswered, result.rival_count) == (4, 2, 2)
    assert reported_votes(result, 5) == {"b": 1, "a": 1, NO_ANSWER: 2}
    assert sum(reported_votes(result, 5).values()) == result.total
    assert reported_votes(tally([Vote("x", None, 0)]), 5) == {"x": 1}
    assert key(NO_ANSWER) != NO_ANSWER  # no sample's answer can spell the bucket
