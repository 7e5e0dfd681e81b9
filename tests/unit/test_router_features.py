"""Request features: cheap difficulty cues, all in [0, 1], no prompt text."""

from __future__ import annotations

from typing import Any

from core.request import GenRequest
from router.features import Features, extract, prompt_text


def user(text: str, **kw: Any) -> GenRequest:
    return GenRequest(messages=({"role": "user", "content": text},), **kw)


WORD_PROBLEM = (
    "Tom has 3 boxes with 12 apples in each box. He gives away 10 apples and then buys 4 more. "
    "How many apples does he have left?"
)


def test_a_word_problem_shows_numbers_maths_and_steps() -> None:
    f = extract(user(WORD_PROBLEM))
    assert f.numbers > 0.3 and f.math > 0 and f.multi_step > 0
    assert f.question == 1.0 and f.code == 0.0


def test_a_short_factual_question_shows_none_of_them() -> None:
    f = extract(user("What is the capital of France? Answer with just the city name."))
    assert (f.numbers, f.math, f.multi_step, f.code) == (0.0, 0.0, 0.0, 0.0)
    assert f.question == 1.0 and f.short_answer == 1.0
    assert f.length < extract(user(WORD_PROBLEM)).length


def test_code_markers() -> None:
    snippet = "Why does this fail?\n```python\ndef f(x):\n    return x[0]\n```"
    assert extract(user(snippet)).code > 0.5
    assert extract(user("Tell me about gardens.")).code == 0.0


def test_conversation_depth_system_prompt_and_max_tokens() -> None:
    messages = (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2 + 2?"},
    )
    deep = extract(GenRequest(messages=messages, sampling={"max_tokens": 512}))
    shallow = extract(user("What is 2 + 2?"))
    assert deep.depth > shallow.depth
    assert (deep.system_prompt, shallow.system_prompt) == (1.0, 0.0)
    assert deep.max_tokens > 0 and shallow.max_tokens == 0


def test_the_last_user_message_is_the_task_and_content_parts_count() -> None:
    parts = [{"type": "text", "text": "Add 17"}, {"type": "text", "text": "and 25."}]
    messages = (
        {"role": "user", "content": "old question"},
        {"role": "assistant", "content": "old answer"},
        {"role": "user", "content": parts},
    )
    assert prompt_text(GenRequest(messages=messages)) == "Add 17 and 25."


def test_every_feature_stays_in_unit_range_for_extreme_input() -> None:
    huge = ("If 12 + 7 = x then each step: def g(): return 1; " * 2000) + "?"
    messages = tuple({"role": "user", "content": huge} for _ in range(100))
    values = extract(GenRequest(messages=messages, sampling={"max_tokens": 10**6})).as_dict()
    assert set(values) == set(Features.names())
    assert all(0.0 <= v <= 1.0 for v in values.values())
    assert values["length"] == 1.0 and values["depth"] == 1.0
